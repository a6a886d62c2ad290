//! `TransportUrl::parse` on arbitrary UTF-8: never panics, and whatever parses prints (with
//! `Display`) to a URL that parses back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use messaging_core::TransportUrl;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(url) = TransportUrl::parse(input) else {
        return;
    };
    let shown = url.to_string();
    let _ = format!("{url:?}");
    let again = TransportUrl::parse(&shown)
        .unwrap_or_else(|e| panic!("{input:?} parsed, but its display {shown:?} does not: {e}"));
    // `Display` prints passwords as `***`, so that is what the reparsed URL holds.
    let mut expected = url.clone();
    for host in &mut expected.hosts {
        if host.password.is_some() {
            host.password = Some("***".to_owned());
        }
    }
    assert_eq!(again, expected, "{input:?} -> {shown:?}");
    // Printing is a fixed point once passwords are masked.
    assert_eq!(again.to_string(), shown, "{input:?}");
});
