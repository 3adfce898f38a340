//! A per-thread byte buffer for text that is hashed and dropped (a string to sign, a
//! canonical request): a signature then costs no allocation of its own.
//!
//! The buffer is taken out and given back, not borrowed in place: a `Vec` held in a local
//! keeps its length in a register while bytes are written, one behind a reference does not.

use std::cell::Cell;

/// Past this size a buffer given back is let go instead of kept.
const KEPT: usize = 64 * 1024;

thread_local! {
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The thread's buffer, empty (a fresh one when it is already taken).
pub fn take() -> Vec<u8> {
    let mut buf = SCRATCH.take();
    buf.clear();
    buf
}

/// Keeps `buf` for the thread's next [`take`], unless it has grown past [`KEPT`].
pub fn give_back(buf: Vec<u8>) {
    if buf.capacity() <= KEPT {
        SCRATCH.set(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_empty_reused_and_nested() {
        let mut outer = take();
        outer.extend_from_slice(b"outer");
        let inner = take();
        assert!(inner.is_empty() && inner.capacity() == 0, "taken twice");
        give_back(inner);
        give_back(outer);
        let again = take();
        assert!(
            again.is_empty() && again.capacity() >= 5,
            "kept and emptied"
        );
        give_back(again);
    }

    #[test]
    fn a_large_buffer_is_let_go() {
        let mut big = take();
        big.resize(KEPT + 1, 0);
        give_back(big);
        assert_eq!(take().capacity(), 0);
    }
}
