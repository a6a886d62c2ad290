//! A line-numbered parser for oslo.config's INI dialect.

/// One `key = value` entry and the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A `[section]` and its entries, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    pub name: String,
    pub entries: Vec<Entry>,
}

/// Parse INI text: `[section]` headers, `key = value` or `key: value` entries, `#` and `;`
/// comment lines, and indented continuation lines appended to the previous value (as
/// oslo.config reads them). Errors carry the 1-based line number.
pub(crate) fn parse(text: &str) -> Result<Vec<Section>, (usize, String)> {
    let mut sections: Vec<Section> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            let entry = sections
                .last_mut()
                .and_then(|s| s.entries.last_mut())
                .ok_or((
                    line,
                    "a continuation line with no entry before it".to_owned(),
                ))?;
            entry.value.push('\n');
            entry.value.push_str(trimmed);
            continue;
        }
        if let Some(header) = trimmed.strip_prefix('[') {
            let name = header
                .strip_suffix(']')
                .filter(|n| !n.trim().is_empty())
                .ok_or((line, format!("malformed section header `{trimmed}`")))?;
            sections.push(Section {
                name: name.trim().to_owned(),
                entries: Vec::new(),
            });
            continue;
        }
        let separator = trimmed
            .find(['=', ':'])
            .ok_or((line, format!("expected `key = value`, got `{trimmed}`")))?;
        let key = trimmed[..separator].trim();
        if key.is_empty() {
            return Err((line, "an entry without a key".to_owned()));
        }
        let section = sections
            .last_mut()
            .ok_or((line, format!("`{key}` is outside any [section]")))?;
        section.entries.push(Entry {
            key: key.to_owned(),
            value: trimmed[separator + 1..].trim().to_owned(),
            line,
        });
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_entries_comments_and_continuations() {
        let text = "# comment\n[DEFAULT]\ntransport_url = rabbit://h//\n; other\n[b]\nk: v\nlist = a,\n  b\n";
        let sections = parse(text).unwrap();
        assert_eq!(sections.len(), 2);
        assert_eq!(
            sections[0].entries[0],
            Entry {
                key: "transport_url".into(),
                value: "rabbit://h//".into(),
                line: 3
            }
        );
        assert_eq!(sections[1].entries[0].value, "v");
        assert_eq!(sections[1].entries[1].value, "a,\nb");
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(parse("key = v").unwrap_err().0, 1);
        assert_eq!(parse("[a]\nnot an entry").unwrap_err().0, 2);
        assert_eq!(parse("[a]\n[]\n").unwrap_err().0, 2);
        assert_eq!(parse("\n  continued").unwrap_err().0, 2);
        assert_eq!(parse("[a]\n = v").unwrap_err().0, 2);
    }
}
