//! Bedrock's list prices (USD per million tokens) for the models batchdrop translates lines to,
//! taken on 2026-12-01 from the Amazon Bedrock pricing page (aws.amazon.com/bedrock/pricing),
//! on-demand and batch; batch inference costs half the on-demand price. Claude on Bedrock is
//! listed at Anthropic's own prices. (The price table carries one date for every entry,
//! `cost::PRICES_AS_OF`, the day the OpenAI and Anthropic prices were taken: summaries show
//! that date for these too.)
//!
//! Entries are named by the model id without its version (`-v1:0`) and snapshot date; the price
//! table finds a full id, and a cross-region inference profile's (`us.anthropic.…`), through
//! them (see the `cost` module).

use crate::types::ListPrice;

pub(crate) const PRICES: &[ListPrice] = &[
    ListPrice::new("anthropic.claude-opus-4-5", 5.00, 25.00, 2.50, 12.50),
    ListPrice::new("anthropic.claude-opus-4-1", 15.00, 75.00, 7.50, 37.50),
    ListPrice::new("anthropic.claude-opus-4", 15.00, 75.00, 7.50, 37.50),
    ListPrice::new("anthropic.claude-sonnet-4-5", 3.00, 15.00, 1.50, 7.50),
    ListPrice::new("anthropic.claude-sonnet-4", 3.00, 15.00, 1.50, 7.50),
    ListPrice::new("anthropic.claude-haiku-4-5", 1.00, 5.00, 0.50, 2.50),
    ListPrice::new("amazon.nova-micro", 0.035, 0.14, 0.0175, 0.07),
    ListPrice::new("amazon.nova-lite", 0.06, 0.24, 0.03, 0.12),
    ListPrice::new("amazon.nova-pro", 0.80, 3.20, 0.40, 1.60),
];

#[cfg(test)]
mod tests {
    use crate::cost::PriceTable;

    #[test]
    fn inference_profile_ids_find_their_price() {
        let prices = PriceTable::builtin();
        for (id, entry) in [
            (
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "anthropic.claude-sonnet-4-5",
            ),
            (
                "global.anthropic.claude-haiku-4-5-20251001-v1:0",
                "anthropic.claude-haiku-4-5",
            ),
            (
                "anthropic.claude-opus-4-20250514-v1:0",
                "anthropic.claude-opus-4",
            ),
            ("amazon.nova-lite-v1:0", "amazon.nova-lite"),
            ("eu.amazon.nova-pro-v1:0", "amazon.nova-pro"),
            ("apac.amazon.nova-micro-v1:0", "amazon.nova-micro"),
        ] {
            let (name, price) = prices.lookup(id).expect(id);
            assert_eq!((name, price.provider.as_str()), (entry, "bedrock"), "{id}");
        }
    }
}
