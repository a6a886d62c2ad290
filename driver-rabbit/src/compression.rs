//! kombu's message compression (`kombu_compression`): the body is compressed and the
//! `compression` header names the codec by a MIME type; a consumer decompresses what the header
//! names, whatever its own setting. kombu's `gzip` is zlib (`application/x-gzip`); its `bzip2`
//! is `application/x-bz2`. Other codecs kombu may have (`application/x-lzma`, brotli, zstd) are
//! refused with a clear error, as malformed messages are.

use std::borrow::Cow;
use std::io::{Read, Write};

use lapin::types::AMQPValue;
use lapin::BasicProperties;
use messaging_core::{MessagingError, Result};

use crate::config::Compression;

/// The header naming the codec.
pub(crate) const HEADER: &str = "compression";
const ZLIB: &str = "application/x-gzip";
const BZIP2: &str = "application/x-bz2";
/// The largest body decompressed: RabbitMQ's default largest message (128 MiB). A body that
/// would grow larger is refused rather than filling memory.
const MAX_DECOMPRESSED: u64 = 128 << 20;

impl Compression {
    /// The header value kombu writes for this codec.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Compression::Gzip => ZLIB,
            Compression::Bzip2 => BZIP2,
        }
    }

    /// `body`, compressed.
    pub(crate) fn compress(self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() / 2);
        let written = match self {
            Compression::Gzip => {
                let mut encoder = flate2::write::ZlibEncoder::new(out, Default::default());
                encoder.write_all(body).and_then(|()| encoder.finish())
            }
            Compression::Bzip2 => {
                let mut encoder = bzip2::write::BzEncoder::new(out, Default::default());
                encoder.write_all(body).and_then(|()| encoder.finish())
            }
        };
        out = written.expect("compressing into memory cannot fail");
        out
    }
}

/// `body`, decompressed if `properties` carry a `compression` header.
pub(crate) fn decompress<'a>(
    properties: &BasicProperties,
    body: &'a [u8],
) -> Result<Cow<'a, [u8]>> {
    decompress_within(properties, body, MAX_DECOMPRESSED)
}

fn decompress_within<'a>(
    properties: &BasicProperties,
    body: &'a [u8],
    limit: u64,
) -> Result<Cow<'a, [u8]>> {
    let Some(codec) = properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get(HEADER).cloned())
    else {
        return Ok(Cow::Borrowed(body));
    };
    let codec = match &codec {
        AMQPValue::LongString(codec) => codec.to_string(),
        AMQPValue::ShortString(codec) => codec.to_string(),
        other => format!("{other:?}"),
    };
    let malformed = |reason: String| {
        MessagingError::MalformedMessage(format!("compression `{codec}`: {reason}"))
    };
    let reader: Box<dyn Read + '_> = match codec.as_str() {
        ZLIB => Box::new(flate2::read::ZlibDecoder::new(body)),
        BZIP2 => Box::new(bzip2::read::BzDecoder::new(body)),
        _ => {
            return Err(malformed(format!(
                "not supported (only `{ZLIB}` and `{BZIP2}` are)"
            )))
        }
    };
    let mut out = Vec::with_capacity(body.len() * 4);
    reader
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| malformed(format!("cannot decompress the body: {e}")))?;
    if out.len() as u64 > limit {
        return Err(malformed(format!("the body grows beyond {limit} bytes")));
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::FieldTable;

    fn compressed_with(codec: &str) -> BasicProperties {
        let mut headers = FieldTable::default();
        headers.insert(HEADER.into(), AMQPValue::LongString(codec.into()));
        BasicProperties::default().with_headers(headers)
    }

    #[test]
    fn round_trips_and_plain_bodies_pass() {
        let body = br#"{"oslo.version": "2.0", "oslo.message": "{}"}"#.repeat(20);
        for codec in [Compression::Gzip, Compression::Bzip2] {
            let packed = codec.compress(&body);
            assert!(packed.len() < body.len(), "{codec:?}");
            let properties = compressed_with(codec.content_type());
            assert_eq!(&*decompress(&properties, &packed).unwrap(), &body[..]);
        }
        let plain = decompress(&BasicProperties::default(), &body).unwrap();
        assert!(matches!(plain, Cow::Borrowed(_)));
    }

    #[test]
    fn bad_or_unknown_compression_is_malformed() {
        let error = decompress(&compressed_with(ZLIB), b"not zlib").unwrap_err();
        assert!(
            matches!(&error, MessagingError::MalformedMessage(m) if m.contains("application/x-gzip")),
            "{error}"
        );
        let error = decompress(&compressed_with("application/x-lzma"), b"x").unwrap_err();
        assert!(error.to_string().contains("not supported"), "{error}");
    }

    #[test]
    fn bombs_are_refused() {
        let bomb = Compression::Gzip.compress(&[0u8; 100_000]);
        assert!(bomb.len() < 1000);
        let error = decompress_within(&compressed_with(ZLIB), &bomb, 65_536).unwrap_err();
        assert!(error.to_string().contains("grows beyond"), "{error}");
    }
}
