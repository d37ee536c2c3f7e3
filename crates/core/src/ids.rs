//! Duplicate custom_ids over a whole upload. Ids are remembered as stable 128-bit hashes
//! (xxh3-128: the same in every process, so a check can span invocations).

use std::collections::HashMap;
use xxhash_rust::xxh3::xxh3_128;

/// The hash an id is remembered by.
pub fn id_hash(id: &str) -> u128 {
    xxh3_128(id.as_bytes())
}

/// Ids seen so far, with the line that used each first.
#[derive(Debug, Default)]
pub struct SeenIds {
    first: HashMap<u128, u64>,
}

impl SeenIds {
    /// Records `id` on `line`; returns the earlier line that used it, if any.
    pub fn first_use(&mut self, id: &str, line: u64) -> Option<u64> {
        match self.first.entry(id_hash(id)) {
            std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(line);
                None
            }
        }
    }
}

/// The errors.jsonl message of a duplicate.
pub fn duplicate_message(custom_id: &str, first_line: u64) -> String {
    format!("custom_id {custom_id:?} was already used on line {first_line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_use_names_the_first_line() {
        let mut seen = SeenIds::default();
        assert_eq!(seen.first_use("r1", 1), None);
        assert_eq!(seen.first_use("r2", 2), None);
        assert_eq!(seen.first_use("r1", 4), Some(1));
        assert_eq!(seen.first_use("r1", 5), Some(1));
    }

    #[test]
    fn the_hash_is_the_same_in_every_process() {
        // Fixed: continuations in other processes compare against hashes written earlier.
        assert_eq!(id_hash("r1"), xxh3_128(b"r1"));
        assert_ne!(id_hash("r1"), id_hash("r2"));
    }
}
