//! Byte text assembled for hashing (a string to sign, a canonical request), and the
//! per-thread buffer it is assembled in, so that a signature costs no allocation of its own.
//!
//! Signed text is short pieces (names, ids, timestamps) joined. Appending each to a `Vec`
//! calls memcpy, and the call costs more than the copy; [`Text`] writes into bytes that are
//! already initialised, with a few fixed-size moves per piece.

use std::cell::Cell;

/// Past this size a buffer given back is let go instead of kept.
const KEPT: usize = 64 * 1024;

thread_local! {
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Bytes written in order into an initialised buffer; `len` of them are the text.
pub struct Text {
    buf: Vec<u8>,
    len: usize,
}

impl Text {
    /// The thread's buffer, emptied (a new one when it is already taken). Its bytes stay
    /// initialised from one use to the next, so writing needs no clearing.
    pub fn scratch() -> Text {
        Text {
            buf: SCRATCH.take(),
            len: 0,
        }
    }

    /// Gives the buffer back to the thread for the next [`Text::scratch`], unless it has
    /// grown past [`KEPT`].
    pub fn keep(self) {
        if self.buf.capacity() <= KEPT {
            SCRATCH.set(self.buf);
        }
    }

    pub fn new() -> Text {
        Text {
            buf: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Bytes `range` of the text.
    pub fn slice(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.as_bytes()[range]
    }

    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Makes room for `more` bytes past the text, so that the next pushes do not grow the
    /// buffer one by one.
    pub fn reserve(&mut self, more: usize) {
        if self.len + more > self.buf.len() {
            grow(&mut self.buf, self.len + more);
        }
    }

    // Inlined: a call per piece would cost what the memcpy call did.
    #[inline(always)]
    pub fn push(&mut self, piece: &[u8]) {
        let end = self.len + piece.len();
        if end > self.buf.len() {
            grow(&mut self.buf, end);
        }
        copy_short(&mut self.buf[self.len..end], piece);
        self.len = end;
    }

    #[inline(always)]
    pub fn push_byte(&mut self, b: u8) {
        if self.len == self.buf.len() {
            grow(&mut self.buf, self.len + 1);
        }
        self.buf[self.len] = b;
        self.len += 1;
    }

    /// The text as a `Vec` of its own bytes.
    pub fn into_vec(mut self) -> Vec<u8> {
        self.buf.truncate(self.len);
        self.buf
    }
}

impl Default for Text {
    fn default() -> Self {
        Text::new()
    }
}

/// Grows `buf` to at least `needed` initialised bytes. It takes the buffer alone, so that a
/// text's length can stay in a register across pushes.
#[cold]
fn grow(buf: &mut Vec<u8>, needed: usize) {
    let size = needed.max(2 * buf.len()).max(256);
    buf.resize(size, 0);
}

/// `dst.copy_from_slice(src)` (same lengths) in fixed-size moves, the last one overlapping
/// the one before; short copies so need no call.
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    let dst = &mut dst[..n];
    if n >= 16 {
        for (d, s) in dst.chunks_exact_mut(16).zip(src.chunks_exact(16)) {
            d.copy_from_slice(s);
        }
        dst[n - 16..].copy_from_slice(&src[n - 16..]);
    } else if n >= 8 {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..]);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_is_empty_reused_and_apart_when_nested() {
        let mut outer = Text::scratch();
        outer.push(b"outer text");
        let inner = Text::scratch();
        assert!(inner.is_empty() && inner.buf.is_empty(), "taken twice");
        inner.keep();
        outer.keep();
        let again = Text::scratch();
        assert!(
            again.is_empty() && again.buf.len() >= 10,
            "kept, initialised, emptied"
        );
        again.keep();
    }

    #[test]
    fn a_large_buffer_is_let_go() {
        let mut big = Text::scratch();
        big.reserve(KEPT + 1);
        big.keep();
        assert_eq!(Text::scratch().buf.capacity(), 0);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Push(Vec<u8>),
        Byte(u8),
        Truncate(usize),
        Reserve(usize),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..70).prop_map(Step::Push),
            2 => any::<u8>().prop_map(Step::Byte),
            1 => (0usize..200).prop_map(Step::Truncate),
            1 => (0usize..600).prop_map(Step::Reserve),
        ]
    }

    proptest::proptest! {
        #[test]
        fn a_text_is_what_a_vec_would_hold(
            steps in proptest::collection::vec(step(), 0..24),
            stale in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        ) {
            // A reused buffer holds bytes of an earlier text: none may show through, and
            // pushes after a truncation (as a string to sign taken off again) land right.
            let mut text = Text { buf: stale, len: 0 };
            let mut want = Vec::new();
            for step in steps {
                match step {
                    Step::Push(piece) => {
                        text.push(&piece);
                        want.extend_from_slice(&piece);
                    }
                    Step::Byte(b) => {
                        text.push_byte(b);
                        want.push(b);
                    }
                    Step::Truncate(len) => {
                        text.truncate(len);
                        want.truncate(len);
                    }
                    Step::Reserve(more) => text.reserve(more),
                }
                proptest::prop_assert_eq!(text.as_bytes(), &want[..]);
            }
            proptest::prop_assert_eq!(text.into_vec(), want);
        }
    }
}
