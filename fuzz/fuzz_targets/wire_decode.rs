//! The oslo wire decoders on arbitrary bytes: never panic, and every message they accept
//! re-encodes to bytes that decode to an equal message and re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use messaging_core::wire::{
    decode_body, decode_failure, encode_failure, ContextStyle, NotificationFormat,
    NotificationMessage, ReplyMessage, RequestMessage,
};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fuzz_target!(|data: &[u8]| {
    let _ = decode_body(data);

    if let Ok(message) = RequestMessage::decode(data) {
        let bytes = message.encode().expect("a decoded request encodes");
        let again = RequestMessage::decode(&bytes)
            .unwrap_or_else(|e| panic!("re-encoded request {} does not decode: {e}", text(&bytes)));
        assert_eq!(again, message, "{}", text(&bytes));
        assert_eq!(again.encode().unwrap(), bytes);
    }

    if let Ok(message) = ReplyMessage::decode(data) {
        let bytes = message.encode().expect("a decoded reply encodes");
        let again = ReplyMessage::decode(&bytes)
            .unwrap_or_else(|e| panic!("re-encoded reply {} does not decode: {e}", text(&bytes)));
        assert_eq!(again, message, "{}", text(&bytes));
        assert_eq!(again.encode().unwrap(), bytes);
    }

    if let Ok((message, unique_id)) = NotificationMessage::decode(data) {
        // A decoded notification may be re-sent by any driver, so every body format and
        // context style must carry it unchanged.
        for format in [NotificationFormat::V2, NotificationFormat::V1] {
            for style in [ContextStyle::Flattened, ContextStyle::Nested] {
                let bytes = message
                    .encode(format, style, unique_id.as_deref())
                    .expect("a decoded notification encodes");
                let (again, again_id) = NotificationMessage::decode(&bytes).unwrap_or_else(|e| {
                    panic!(
                        "re-encoded notification {} does not decode: {e}",
                        text(&bytes)
                    )
                });
                assert_eq!(again, message, "{}", text(&bytes));
                assert_eq!(again_id, unique_id);
                assert_eq!(
                    again.encode(format, style, again_id.as_deref()).unwrap(),
                    bytes
                );
            }
        }
    }

    let failure = std::str::from_utf8(data)
        .ok()
        .and_then(|s| decode_failure(s).ok());
    if let Some(failure) = failure {
        let encoded = encode_failure(&failure).expect("a decoded failure encodes");
        let again = decode_failure(&encoded)
            .unwrap_or_else(|e| panic!("re-encoded failure {encoded} does not decode: {e}"));
        assert_eq!(again, failure);
        assert_eq!(encode_failure(&again).unwrap(), encoded);
    }
});
