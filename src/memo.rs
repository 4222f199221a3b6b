//! A process-wide memo of texts keyed by a sha256, bounded: what a fleet's plan
//! derives or renders once and takes again for every node that asks with the same
//! inputs (SCRAM verifiers, templates whose module marks them `shared`).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Texts by key, emptied whenever it would grow past its bound (a plan of a fleet
/// stays far below it; a long-lived process cannot grow without end).
pub struct Memo {
    map: OnceLock<Mutex<HashMap<[u8; 32], String>>>,
    max: usize,
}

impl Memo {
    /// An empty memo of at most `max` texts, for a `static`.
    pub const fn new(max: usize) -> Self {
        Memo {
            map: OnceLock::new(),
            max,
        }
    }

    /// The text of `key`, made by `make` if the memo lacks it. `make` runs without
    /// the lock held (two threads may both make a missing text; they make the same).
    pub fn get_or_make<E>(
        &self,
        key: [u8; 32],
        make: impl FnOnce() -> Result<String, E>,
    ) -> Result<String, E> {
        let map = self.map.get_or_init(Default::default);
        if let Some(text) = map.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(text.clone());
        }
        let text = make()?;
        let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= self.max {
            m.clear();
        }
        m.insert(key, text.clone());
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_made_once_and_the_memo_stays_bounded() {
        static MEMO: Memo = Memo::new(2);
        let made = std::cell::Cell::new(0);
        let get = |k: u8| {
            MEMO.get_or_make::<()>([k; 32], || {
                made.set(made.get() + 1);
                Ok(format!("text {k}"))
            })
            .unwrap()
        };
        assert_eq!(get(1), "text 1");
        assert_eq!(get(1), "text 1");
        assert_eq!(made.get(), 1);
        get(2);
        // Full: the third key empties it, so key 1 is made again.
        get(3);
        assert_eq!(MEMO.map.get().unwrap().lock().unwrap().len(), 1);
        assert_eq!(get(1), "text 1");
        assert_eq!(made.get(), 4);
        // A failure is not kept.
        assert_eq!(MEMO.get_or_make([9; 32], || Err("no")), Err("no"));
        assert_eq!(
            MEMO.get_or_make::<()>([9; 32], || Ok("yes".into())),
            Ok("yes".into())
        );
    }
}
