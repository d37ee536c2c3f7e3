//! Chunk planning: which batch each accepted request goes into.
//!
//! Requests are grouped as the provider's dialect groups them ([`crate::types::Group`]) and each group
//! fills one open chunk until the next request would pass the route's request or byte limit; then
//! that chunk is sealed and a new one opens. Within a group, requests that share a long prompt
//! prefix (a class of [`crate::cache_prefix`]) fill an open chunk of their own. Requests keep
//! their input order inside a chunk (chunks need not be contiguous: output order is restored
//! from line numbers).
//! The planner only decides; the caller does the writing.

pub use crate::manifest::ChunkPlan;
use crate::route::ChunkLimits;
use crate::types::Group;
use std::collections::HashMap;

/// Where to put the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The chunk to append to.
    pub chunk: u32,
    /// True when this request opens the chunk.
    pub opens: bool,
    /// A chunk of the same group that is full and must be sealed first.
    pub seals: Option<ChunkPlan>,
}

#[derive(Debug)]
struct Open {
    plan: ChunkPlan,
    units: u64,
}

#[derive(Debug)]
pub struct Planner {
    limits: ChunkLimits,
    /// The open chunk of each group and prefix class (0: no class).
    open: HashMap<(Group, u64), Open>,
    next_index: u32,
}

impl Planner {
    /// A planner whose first chunk gets index `first` (a continuation of an earlier segment).
    pub fn starting_at(limits: ChunkLimits, first: u32) -> Self {
        Self {
            limits,
            open: HashMap::new(),
            next_index: first,
        }
    }

    /// Places a request of `line_bytes` bytes (without newline) counting `units` requests.
    pub fn place(&mut self, group: &Group, line_bytes: u64, units: u64) -> Placement {
        self.place_in(group, 0, line_bytes, units)
    }

    /// Places a request of prefix class `class` (0: none) of `group`: it joins the open chunk
    /// of that class.
    pub fn place_in(
        &mut self,
        group: &Group,
        class: u64,
        line_bytes: u64,
        units: u64,
    ) -> Placement {
        let bytes = line_bytes + 1;
        let key = (group.clone(), class);
        let mut seals = None;
        if let Some(open) = self.open.get(&key) {
            let full = open.units + units > self.limits.max_requests_per_batch
                || open.plan.bytes + bytes > self.limits.max_bytes_per_batch;
            if full {
                seals = self.open.remove(&key).map(|o| o.plan);
            }
        }
        let mut opens = false;
        let next_index = &mut self.next_index;
        let open = self.open.entry(key).or_insert_with(|| {
            opens = true;
            let index = *next_index;
            *next_index += 1;
            Open {
                plan: ChunkPlan {
                    index,
                    endpoint: group.endpoint.clone(),
                    model: group.model.clone(),
                    requests: 0,
                    bytes: 0,
                    estimate: None,
                },
                units: 0,
            }
        });
        open.plan.requests += 1;
        open.plan.bytes += bytes;
        open.units += units;
        Placement {
            chunk: open.plan.index,
            opens,
            seals,
        }
    }

    /// Seals every chunk still open, in index order.
    pub fn finish(self) -> Vec<ChunkPlan> {
        let mut rest: Vec<ChunkPlan> = self.open.into_values().map(|o| o.plan).collect();
        rest.sort_by_key(|p| p.index);
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(requests: u64, bytes: u64) -> ChunkLimits {
        ChunkLimits {
            min_requests_per_batch: 1,
            max_requests_per_batch: requests,
            max_bytes_per_batch: bytes,
            max_line_bytes: bytes,
        }
    }

    fn group(model: &str) -> Group {
        Group {
            endpoint: "/v1/chat/completions".into(),
            model: model.into(),
        }
    }

    #[test]
    fn request_limit_seals_a_chunk() {
        let mut p = Planner::starting_at(limits(2, 1_000), 0);
        let g = group("a");
        assert_eq!(p.place(&g, 9, 1).chunk, 0);
        assert_eq!(p.place(&g, 9, 1).chunk, 0);
        let third = p.place(&g, 9, 1);
        assert_eq!(third.chunk, 1);
        assert!(third.opens);
        assert_eq!(third.seals.unwrap().requests, 2);
        let rest = p.finish();
        assert_eq!(rest.len(), 1);
        assert_eq!((rest[0].index, rest[0].requests, rest[0].bytes), (1, 1, 10));
    }

    #[test]
    fn byte_limit_counts_newlines() {
        let mut p = Planner::starting_at(limits(100, 20), 0);
        let g = group("a");
        p.place(&g, 9, 1); // 10 bytes
        assert_eq!(p.place(&g, 9, 1).chunk, 0); // 20 bytes: exactly at the limit
        assert_eq!(p.place(&g, 0, 1).chunk, 1);
    }

    #[test]
    fn models_never_share_a_chunk() {
        let mut p = Planner::starting_at(limits(100, 1_000), 0);
        assert_eq!(p.place(&group("a"), 5, 1).chunk, 0);
        assert_eq!(p.place(&group("b"), 5, 1).chunk, 1);
        assert_eq!(p.place(&group("a"), 5, 1).chunk, 0);
        let done = p.finish();
        assert_eq!(
            done.iter().map(|c| c.model.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn a_prefix_class_fills_a_chunk_of_its_own() {
        let mut p = Planner::starting_at(limits(100, 1_000), 0);
        let g = group("a");
        assert_eq!(p.place_in(&g, 7, 5, 1).chunk, 0);
        assert_eq!(p.place(&g, 5, 1).chunk, 1);
        assert_eq!(p.place_in(&g, 7, 5, 1).chunk, 0);
        assert_eq!(p.place_in(&g, 9, 5, 1).chunk, 2);
        let done = p.finish();
        assert_eq!(
            done.iter().map(|c| c.requests).collect::<Vec<_>>(),
            [2, 1, 1]
        );
    }

    #[test]
    fn units_count_against_the_request_limit() {
        let mut p = Planner::starting_at(limits(10, 1_000), 0);
        let g = group("e");
        assert_eq!(p.place(&g, 5, 6).chunk, 0);
        assert_eq!(p.place(&g, 5, 6).chunk, 1);
    }
}
