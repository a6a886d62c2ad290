//! Keys of a configuration file that are not ours: refused with a hint, or accepted with a
//! warning when they look like a typo of ours.

use std::fmt;

use super::ini::Entry;
use super::invalid;
use crate::error::Result;
use crate::options::closest;

/// Something [`parse_ini`](super::parse_ini) accepted but that is probably not what was meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The line of the file it is about, if any.
    pub line: Option<usize>,
    /// What looks wrong, and what to write instead.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Judge `entry`, a key of `section` that is not one of `ours`.
///
/// In our own sections it is an error naming the nearest key. `[DEFAULT]` is shared with other
/// libraries, so there it is an error only when it starts with one of our keys and a space (an
/// `=` forgotten: `transport_url rabbit://…` reads as key `transport_url rabbit`), a warning
/// when it is one or two typos away from one of ours, and otherwise none of our business.
pub(super) fn unknown_key(
    section: &str,
    entry: &Entry,
    ours: &[&str],
    warnings: &mut Vec<ConfigWarning>,
) -> Result<()> {
    let key = entry.key.as_str();
    if let Some(first) = key.split_whitespace().next().filter(|_| key.contains(' ')) {
        if ours.contains(&first) {
            // The value is not repeated: it may hold a password.
            return Err(invalid(
                Some(entry.line),
                format!("`{first}` is followed by a space, not `=`: write `{first} = <value>`"),
            ));
        }
    }
    let lowercase = key.to_ascii_lowercase();
    let guess = ours
        .iter()
        .copied()
        .find(|ours| *ours == lowercase)
        .or_else(|| closest(&lowercase, ours.iter().copied()));
    let did_you_mean = guess
        .map(|name| format!("; did you mean `{name}`?"))
        .unwrap_or_default();
    if section != "DEFAULT" {
        return Err(invalid(
            Some(entry.line),
            format!("unknown option `{key}` in [{section}]{did_you_mean}"),
        ));
    }
    if guess.is_some() {
        warnings.push(ConfigWarning {
            line: Some(entry.line),
            message: format!(
                "`{key}` in [DEFAULT] is not a messaging option{did_you_mean} (ignored)"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parse_ini;
    use crate::MessagingError;

    #[test]
    fn a_key_of_ours_without_equals_is_an_error_naming_its_line() {
        let text = "[DEFAULT]\ndebug = true\ntransport_url rabbit://guest:secret@127.0.0.1:5672/\n";
        let err = parse_ini(text).unwrap_err();
        assert!(
            matches!(err, MessagingError::InvalidConfig { line: Some(3), .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("`transport_url` is followed by a space"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
        // Other libraries' keys in [DEFAULT] stay their business, spaces or not.
        parse_ini("[DEFAULT]\nmy option: 1\ntransport_url = memory://\n").unwrap();
    }

    #[test]
    fn typos_of_our_default_keys_are_warnings_naming_the_key() {
        let config = parse_ini(
            "[DEFAULT]\ntransport_url = memory://\ntransport_urll = rabbit://h/\n\
             rpc_respones_timeout = 5\nControl_Exchange = nova\nstate_path = /var/lib/nova\n",
        )
        .unwrap();
        let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings[0].starts_with("line 3: `transport_urll`"),
            "{warnings:?}"
        );
        assert!(
            warnings[0].contains("did you mean `transport_url`?"),
            "{warnings:?}"
        );
        assert!(warnings[1].contains("did you mean `rpc_response_timeout`?"));
        assert!(warnings[2].contains("did you mean `control_exchange`?"));
        assert_eq!(config.transport_url, "memory://", "a typo sets nothing");
    }

    #[test]
    fn unknown_keys_in_our_sections_suggest_the_nearest() {
        let err = parse_ini("[oslo_messaging_notifications]\ntopic = a\n").unwrap_err();
        assert!(err.to_string().contains("did you mean `topics`?"), "{err}");
    }

    #[test]
    fn no_transport_url_means_oslos_default_with_a_warning() {
        for text in ["", "[DEFAULT]\ntransport_urll = memory://\n", "[DEFAULT]\n"] {
            let config = parse_ini(text).unwrap();
            assert_eq!(config.transport_url, "rabbit://", "{text:?}");
            let last = config.warnings.last().expect("a warning").to_string();
            assert!(
                last.starts_with("no `transport_url` in [DEFAULT]"),
                "{last}"
            );
        }
        let err = parse_ini("[DEFAULT]\ntransport_url =\n").unwrap_err();
        assert!(
            matches!(err, MessagingError::InvalidConfig { line: Some(2), .. }),
            "{err}"
        );
    }
}
