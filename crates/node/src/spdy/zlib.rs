//! SPDY/3 header compression: one zlib stream per direction, primed with the SPDY/3 dictionary.
//!
//! SPDY/3 (draft-mbelshe-httpbis-spdy-00 §2.6.10.1) compresses every header block of a connection
//! with one zlib context per direction, never reset, whose window starts with a fixed dictionary of
//! common header words. Each block ends with a `SYNC_FLUSH` so the peer can decode it as soon as the
//! frame arrives. Go's framer (used by client-go through moby/spdystream) does exactly this, at the
//! best compression level; the decoder must therefore keep its state across frames and supply the
//! dictionary when the first block asks for it (`FDICT` with the dictionary's Adler-32).

use std::sync::LazyLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The header words of the SPDY/3 dictionary, each stored with a 4-byte big-endian length.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The dictionary's tail: status codes, reason phrases, dates and common values, without lengths.
const DICTIONARY_TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412\
413414415416417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently\
400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error\
501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec \
00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,\
application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,\
deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

/// The SPDY/3 header-compression dictionary (1,423 bytes, Adler-32 `0xe3c6a7c2`).
pub static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut dict = Vec::with_capacity(1423);
    for word in DICTIONARY_WORDS {
        dict.extend_from_slice(&(word.len() as u32).to_be_bytes());
        dict.extend_from_slice(word.as_bytes());
    }
    dict.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    dict
});

/// Why a header block could not be (de)compressed.
#[derive(Debug, thiserror::Error)]
pub enum ZlibError {
    /// The peer's compressed bytes are not a valid continuation of its zlib stream.
    #[error("corrupt compressed header block: {0}")]
    Corrupt(String),
    /// The block inflates past the limit.
    #[error("header block inflates past {0} bytes")]
    TooLarge(usize),
    /// Our own compressor failed (should not happen).
    #[error("header compression failed: {0}")]
    Internal(String),
}

/// The sending direction's compressor.
pub struct HeaderCompressor {
    z: Compress,
}

impl std::fmt::Debug for HeaderCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeaderCompressor")
    }
}

impl HeaderCompressor {
    /// A fresh zlib stream primed with the dictionary (best compression, as Go's framer).
    pub fn new() -> Self {
        let mut z = Compress::new(Compression::best(), true);
        // Only fails when called after data was compressed; this is the first call.
        let _ = z.set_dictionary(&DICTIONARY);
        Self { z }
    }

    /// Compresses one header block and sync-flushes, appending to `out`.
    pub fn compress(&mut self, block: &[u8], out: &mut Vec<u8>) -> Result<(), ZlibError> {
        let mut input = block;
        loop {
            out.reserve(input.len() / 2 + 64);
            let before_in = self.z.total_in();
            let before_out = out.len();
            self.z
                .compress_vec(input, out, FlushCompress::Sync)
                .map_err(|e| ZlibError::Internal(e.to_string()))?;
            let consumed = (self.z.total_in() - before_in) as usize;
            input = &input[consumed..];
            // Done when all input is in and the flush left spare room (nothing more pending).
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
            if consumed == 0 && out.len() == before_out && out.len() < out.capacity() {
                return Err(ZlibError::Internal("compressor made no progress".into()));
            }
        }
    }
}

impl Default for HeaderCompressor {
    fn default() -> Self {
        Self::new()
    }
}

/// The receiving direction's decompressor.
pub struct HeaderDecompressor {
    z: Decompress,
    limit: usize,
}

impl std::fmt::Debug for HeaderDecompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeaderDecompressor")
    }
}

impl HeaderDecompressor {
    /// A fresh zlib stream; blocks may inflate to at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            z: Decompress::new(true),
            limit,
        }
    }

    /// Inflates one frame's compressed header block (which must end on a flush point).
    pub fn decompress(&mut self, compressed: &[u8]) -> Result<Vec<u8>, ZlibError> {
        let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
        let mut input = compressed;
        let mut dictionary_set = false;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= self.limit {
                    return Err(ZlibError::TooLarge(self.limit));
                }
                out.reserve((out.len()).max(256).min(self.limit - out.len()));
            }
            let before_in = self.z.total_in();
            let before_out = out.len();
            let status = match self
                .z
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                Ok(status) => status,
                Err(err) => {
                    if err.needs_dictionary().is_some() && !dictionary_set {
                        self.z
                            .set_dictionary(&DICTIONARY)
                            .map_err(|e| ZlibError::Corrupt(e.to_string()))?;
                        dictionary_set = true;
                        let consumed = (self.z.total_in() - before_in) as usize;
                        input = &input[consumed..];
                        continue;
                    }
                    return Err(ZlibError::Corrupt(err.to_string()));
                }
            };
            let consumed = (self.z.total_in() - before_in) as usize;
            input = &input[consumed..];
            if status == Status::StreamEnd {
                // The peer ended its zlib stream: later blocks could not be decoded.
                return Err(ZlibError::Corrupt(
                    "zlib stream ended inside a session".into(),
                ));
            }
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            if consumed == 0 && out.len() == before_out && out.len() < out.capacity() {
                return Err(ZlibError::Corrupt(
                    "truncated compressed header block".into(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in data {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(adler32(&DICTIONARY), 0xe3c6_a7c2);
    }

    #[test]
    fn blocks_round_trip_across_one_stream() {
        let mut tx = HeaderCompressor::new();
        let mut rx = HeaderDecompressor::new(1 << 20);
        for block in [
            &b"streamtype\0error"[..],
            b"",
            b"x-stream-protocol-version v4.channel.k8s.io",
            &[0u8; 5000],
        ] {
            let mut wire = Vec::new();
            tx.compress(block, &mut wire).expect("compress");
            assert_eq!(rx.decompress(&wire).expect("decompress"), block);
        }
    }

    #[test]
    fn garbage_is_an_error() {
        let mut rx = HeaderDecompressor::new(1 << 20);
        assert!(rx.decompress(b"\x00\x01garbage that is not zlib").is_err());
    }

    #[test]
    fn inflation_is_bounded() {
        let mut tx = HeaderCompressor::new();
        let mut rx = HeaderDecompressor::new(1000);
        let mut wire = Vec::new();
        tx.compress(&[b'a'; 100_000], &mut wire).expect("compress");
        assert!(matches!(
            rx.decompress(&wire),
            Err(ZlibError::TooLarge(1000))
        ));
    }
}
