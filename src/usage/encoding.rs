//! Input text encodings: UTF-8 (the default) and GB18030, which Chinese Excel uses when it
//! saves CSV. GB18030 input is decoded to UTF-8 as it is read, a buffer at a time, so a
//! file of a million records is never held whole.

use std::io::{BufRead, Read};

/// `--encoding`: how the input's bytes are text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Encoding {
    #[default]
    #[value(name = "utf-8", alias = "utf8")]
    Utf8,
    /// GB18030, a superset of GBK: one decoder reads both.
    #[value(name = "gb18030", alias = "gbk")]
    Gb18030,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Gb18030 => "GB18030",
        }
    }
}

/// Put in the decoded text where the input is not valid GB18030: a byte that is never
/// UTF-8, so the line reader reports the line (never a silent U+FFFD in a field).
pub const MALFORMED: u8 = 0xFF;

/// GB18030 bytes in, UTF-8 out. A UTF-8 or UTF-16 byte-order mark switches the decoder to
/// that encoding (and is dropped); a GB18030 one becomes U+FEFF, which the line reader
/// skips like a UTF-8 one.
pub struct Decoded<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    out: Vec<u8>,
    at: usize,
    done: bool,
}

/// Decoded text is produced this many bytes at a time.
const OUT_CHUNK: usize = 64 * 1024;

impl<R: BufRead> Decoded<R> {
    pub fn gb18030(inner: R) -> Self {
        Decoded {
            inner,
            decoder: encoding_rs::GB18030.new_decoder(),
            out: Vec::with_capacity(OUT_CHUNK),
            at: 0,
            done: false,
        }
    }

    /// Decodes the next input buffer into `out`; false at the end of the input.
    fn refill(&mut self) -> std::io::Result<bool> {
        while !self.done {
            let src = self.inner.fill_buf()?;
            let last = src.is_empty();
            self.out.resize(OUT_CHUNK, 0);
            let (result, read, written) =
                self.decoder
                    .decode_to_utf8_without_replacement(src, &mut self.out, last);
            self.inner.consume(read);
            self.out.truncate(written);
            self.at = 0;
            match result {
                encoding_rs::DecoderResult::InputEmpty => self.done = last,
                encoding_rs::DecoderResult::OutputFull => {}
                encoding_rs::DecoderResult::Malformed(..) => self.out.push(MALFORMED),
            }
            if !self.out.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl<R: BufRead> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.out.len() && !self.refill()? {
            return Ok(0);
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The start of a file is UTF-8 text with characters outside ASCII (and no byte-order mark,
/// which the GB18030 decoder follows anyway): read as GB18030 it would become other
/// characters (实例 as 瀹炰緥) without any error. A cut-off character at the end counts as
/// UTF-8; Chinese in GB18030 is practically never valid UTF-8.
pub fn is_utf8_text(head: &[u8]) -> bool {
    if head.starts_with(b"\xEF\xBB\xBF") {
        return false;
    }
    let valid = match std::str::from_utf8(head) {
        Ok(_) => head.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => return false,
    };
    !head[..valid].is_ascii()
}

/// A line that is not UTF-8 but reads cleanly as GB18030 (with at least one character
/// outside ASCII): the file was most likely saved by Chinese Excel.
pub fn reads_as_gb18030(line: &[u8]) -> bool {
    encoding_rs::GB18030
        .decode_without_bom_handling_and_without_replacement(line)
        .is_some_and(|text| !text.is_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Vec<u8> {
        // A tiny input buffer: characters are split across reads.
        let mut d = Decoded::gb18030(std::io::BufReader::with_capacity(3, bytes));
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn gb18030_decodes_across_buffer_boundaries() {
        let text = "实例-一号,用量\r\n第二行\n".repeat(5000);
        let (bytes, _, bad) = encoding_rs::GB18030.encode(&text);
        assert!(!bad);
        assert_ne!(&bytes[..], text.as_bytes());
        assert_eq!(String::from_utf8(decode(&bytes)).unwrap(), text);
    }

    #[test]
    fn malformed_input_is_marked_not_replaced() {
        // 0x81 0x0A: a lead byte cut off by the newline, which is kept.
        let out = decode(b"ab\x81\ncd\n");
        assert_eq!(out, b"ab\xFF\ncd\n");
        assert_eq!(decode(b"x\x81"), b"x\xFF");
    }

    #[test]
    fn boms_are_dropped_or_left_for_the_line_reader() {
        assert_eq!(decode(b"\xEF\xBB\xBFab"), b"ab");
        let (bom, _, _) = encoding_rs::GB18030.encode("\u{FEFF}ab");
        assert_eq!(decode(&bom), "\u{FEFF}ab".as_bytes());
    }

    #[test]
    fn utf8_text_is_told_from_gb18030() {
        assert!(is_utf8_text("实例-9,1\n".as_bytes()));
        // Cut inside a character at the end of the peeked bytes: still UTF-8.
        assert!(is_utf8_text(&"实例".as_bytes()[..5]));
        let (gb, _, _) = encoding_rs::GB18030.encode("实例-9,1\n");
        assert!(!is_utf8_text(&gb));
        assert!(!is_utf8_text(b"plain,1\n"));
        assert!(!is_utf8_text("\u{feff}实例".as_bytes()));
    }

    #[test]
    fn gb18030_hint_only_for_text_that_reads_as_it() {
        let (bytes, _, _) = encoding_rs::GB18030.encode("实例,1");
        assert!(reads_as_gb18030(&bytes));
        assert!(!reads_as_gb18030(b"plain,1"));
        assert!(!reads_as_gb18030(b"caf\xE9,1"));
    }
}
