//! `parse_ini` on arbitrary text: never panics; errors name a line of the input; an accepted
//! file yields a config whose INI rendering parses back to the same config (warnings aside).
#![no_main]

use std::fmt::Write;

use libfuzzer_sys::fuzz_target;
use messaging_core::config::{parse_ini, MessagingConfig};
use messaging_core::MessagingError;

/// Sections of the drivers' options, by driver name (as `parse_ini` maps them).
fn driver_section(driver: &str) -> &'static str {
    match driver {
        "rabbit" => "oslo_messaging_rabbit",
        "amqp1" => "oslo_messaging_amqp",
        "kafka" => "oslo_messaging_kafka",
        other => panic!("driver options for unexpected driver `{other}`"),
    }
}

/// `key = value`, with a multi-line value written as indented continuation lines.
fn entry(out: &mut String, key: &str, value: &str) {
    writeln!(out, "{key} = {}", value.replace('\n', "\n  ")).unwrap();
}

fn render(config: &MessagingConfig) -> String {
    let mut out = String::from("[DEFAULT]\n");
    entry(&mut out, "transport_url", &config.transport_url);
    entry(&mut out, "control_exchange", &config.control_exchange);
    entry(
        &mut out,
        "rpc_response_timeout",
        &config.rpc_response_timeout.to_string(),
    );
    entry(
        &mut out,
        "executor_thread_pool_size",
        &config.executor_thread_pool_size.to_string(),
    );
    entry(
        &mut out,
        "rpc_ping_enabled",
        &config.rpc_ping_enabled.to_string(),
    );
    let notifications = &config.notifications;
    out.push_str("[oslo_messaging_notifications]\n");
    if let Some(url) = &notifications.transport_url {
        entry(&mut out, "transport_url", url);
    }
    entry(&mut out, "driver", &notifications.driver.join(", "));
    entry(&mut out, "topics", &notifications.topics.join(", "));
    entry(&mut out, "retry", &notifications.retry.to_string());
    if let Some(dir) = &notifications.outbox_dir {
        entry(&mut out, "outbox_dir", dir);
    }
    entry(
        &mut out,
        "outbox_capacity",
        &notifications.outbox_capacity.to_string(),
    );
    entry(&mut out, "outbox_overflow", &notifications.outbox_overflow);
    // `[oslo_messaging_signing]` is not rendered: secrets cannot be read back (by design).
    for (driver, options) in &config.driver_options {
        writeln!(out, "[{}]", driver_section(driver)).unwrap();
        for (key, value) in options {
            entry(&mut out, key, value);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match parse_ini(text) {
        Ok(config) => config,
        Err(MessagingError::InvalidConfig {
            line: Some(line), ..
        }) => {
            assert!(
                (1..=text.lines().count()).contains(&line),
                "error names line {line} of {text:?}"
            );
            return;
        }
        Err(other) => panic!("parse_ini gave {other:?}, not InvalidConfig with a line"),
    };
    let notifications = &config.notifications;
    for item in notifications.driver.iter().chain(&notifications.topics) {
        assert!(
            !item.is_empty() && item.trim() == item && !item.contains([',', '\n']),
            "list item {item:?}"
        );
    }
    for options in config.driver_options.values() {
        for (i, (key, _)) in options.iter().enumerate() {
            assert!(options[..i].iter().all(|(k, _)| k != key), "`{key}` twice");
        }
    }

    let rendered = render(&config);
    let mut again = parse_ini(&rendered).unwrap_or_else(|e| {
        panic!("{text:?} gave a config whose rendering {rendered:?} fails: {e}")
    });
    let mut expected = config;
    if let Some(signing) = expected.signing.take() {
        assert!(!signing.keys().is_empty(), "{text:?}: signing without keys");
    }
    again.signing = None;
    // Warnings are about how the text was written, not what it sets.
    (again.warnings, expected.warnings) = (Vec::new(), Vec::new());
    assert_eq!(again, expected, "{text:?} -> {rendered:?}");
});
