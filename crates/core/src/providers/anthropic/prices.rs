//! Anthropic's list prices (USD per million tokens, taken on `cost::PRICES_AS_OF`).
//! Message Batches cost half the synchronous prices. Prompt caching (5-minute entries): a cache
//! read costs 0.1 times the input price, a cache write 1.25 times, batch or not.

use crate::types::ListPrice;

pub(crate) const PRICES: &[ListPrice] = &[
    ListPrice::new("claude-opus-4-5", 5.00, 25.00, 2.50, 12.50).cached(0.1, 1.25),
    ListPrice::new("claude-opus-4-1", 15.00, 75.00, 7.50, 37.50).cached(0.1, 1.25),
    ListPrice::new("claude-opus-4", 15.00, 75.00, 7.50, 37.50).cached(0.1, 1.25),
    ListPrice::new("claude-sonnet-4-5", 3.00, 15.00, 1.50, 7.50).cached(0.1, 1.25),
    ListPrice::new("claude-sonnet-4", 3.00, 15.00, 1.50, 7.50).cached(0.1, 1.25),
    ListPrice::new("claude-3-7-sonnet", 3.00, 15.00, 1.50, 7.50).cached(0.1, 1.25),
    ListPrice::new("claude-haiku-4-5", 1.00, 5.00, 0.50, 2.50).cached(0.1, 1.25),
    ListPrice::new("claude-3-5-haiku", 0.80, 4.00, 0.40, 2.00).cached(0.1, 1.25),
    ListPrice::new("claude-3-haiku", 0.25, 1.25, 0.125, 0.625).cached(0.1, 1.25),
];
