//! OpenAI's list prices (USD per million tokens, taken on `cost::PRICES_AS_OF`).
//! Batch prices are half the synchronous ones. Cached input (automatic prompt caching, no
//! charge for writing the cache) is listed per family: 0.1 times the input price for gpt-5,
//! 0.25 for gpt-4.1, o3 and o4-mini, 0.5 for gpt-4o; the same share is applied at batch
//! prices (the price list shows a cached batch price only for some models: an assumption).

use crate::types::ListPrice;

pub(crate) const PRICES: &[ListPrice] = &[
    ListPrice::new("gpt-5", 1.25, 10.00, 0.625, 5.00).cached(0.1, 1.0),
    ListPrice::new("gpt-5-mini", 0.25, 2.00, 0.125, 1.00).cached(0.1, 1.0),
    ListPrice::new("gpt-5-nano", 0.05, 0.40, 0.025, 0.20).cached(0.1, 1.0),
    ListPrice::new("gpt-4.1", 2.00, 8.00, 1.00, 4.00).cached(0.25, 1.0),
    ListPrice::new("gpt-4.1-mini", 0.40, 1.60, 0.20, 0.80).cached(0.25, 1.0),
    ListPrice::new("gpt-4.1-nano", 0.10, 0.40, 0.05, 0.20).cached(0.25, 1.0),
    ListPrice::new("gpt-4o", 2.50, 10.00, 1.25, 5.00).cached(0.5, 1.0),
    ListPrice::new("gpt-4o-mini", 0.15, 0.60, 0.075, 0.30).cached(0.5, 1.0),
    ListPrice::new("o3", 2.00, 8.00, 1.00, 4.00).cached(0.25, 1.0),
    ListPrice::new("o4-mini", 1.10, 4.40, 0.55, 2.20).cached(0.25, 1.0),
    ListPrice::new("gpt-3.5-turbo", 0.50, 1.50, 0.25, 0.75),
    ListPrice::new("text-embedding-3-small", 0.02, 0.0, 0.01, 0.0),
    ListPrice::new("text-embedding-3-large", 0.13, 0.0, 0.065, 0.0),
    ListPrice::new("text-embedding-ada-002", 0.10, 0.0, 0.05, 0.0),
];
