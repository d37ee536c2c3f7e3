//! Prices and costs: what a job cost at batch prices, what the same tokens would have cost
//! through the synchronous API, and the difference.
//!
//! - [`PriceTable::builtin`] holds the providers' public list prices, in USD per million
//!   tokens, taken on [`PRICES_AS_OF`]; a config file replaces or adds models with
//!   `[prices."model-name"]` (see the `config` module).
//! - A model name resolves to its table entry exactly, or with a snapshot suffix removed
//!   (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`, `claude-sonnet-4-5-20250929` →
//!   `claude-sonnet-4-5`, `…-latest`), or, for a model id with a version
//!   (`anthropic.claude-sonnet-4-5-20250929-v1:0`), without the version and then the snapshot;
//!   a cross-region inference profile's id (`us.anthropic.claude-…`) resolves as the model id
//!   after its scope word. Nothing else is guessed: a name without an entry is reported as
//!   unpriced, with its tokens, and left out of the totals.
//! - Costs are input and output token prices, with prompt caching: input tokens the provider
//!   reports as read from its cache (OpenAI `cached_tokens`, Anthropic
//!   `cache_read_input_tokens`) cost the model's `cache_read` share of the input price, those
//!   written to it (Anthropic `cache_creation_input_tokens`) its `cache_write` share, at batch
//!   and synchronous prices alike; `cache_saved` is what that changed against plain input
//!   prices (negative when writes cost more than reads saved). Long-context surcharges and
//!   tool fees are not modelled.
//! - Amounts are worked out in whole nano-dollars (1e-9 USD, exact for every built-in price
//!   but Nova Micro's batch input price, 17.5 nano-dollars a token, rounded once per model)
//!   per model and price, then added up; `saved` is the exact difference.
//!
//! The sandbox routes are priced like the real models their requests name: what the same work
//! would have cost at the provider.

use crate::manifest::{Manifest, Usage};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The day the built-in prices were taken from the providers' public price lists.
pub const PRICES_AS_OF: &str = "2025-11-24";
/// The currency of every amount.
pub const CURRENCY: &str = "USD";

/// One model's prices, in USD per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// `openai`, `anthropic`, or whatever a config file says.
    pub provider: String,
    /// Synchronous API, per million input tokens.
    pub input: f64,
    /// Synchronous API, per million output tokens.
    pub output: f64,
    /// Batch API, per million input tokens.
    pub batch_input: f64,
    /// Batch API, per million output tokens.
    pub batch_output: f64,
    /// A cached input token's price as a share of the input price (1: no discount).
    #[serde(default = "one")]
    pub cache_read: f64,
    /// A cache-writing input token's price as a share of the input price (1: no surcharge).
    #[serde(default = "one")]
    pub cache_write: f64,
    /// The day these prices were taken (or `config` for an override without a date).
    pub as_of: String,
}

fn one() -> f64 {
    1.0
}

/// Model name → prices.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriceTable {
    models: BTreeMap<String, Price>,
}

impl Default for PriceTable {
    fn default() -> Self {
        Self::builtin()
    }
}

impl PriceTable {
    /// The providers' list prices of [`PRICES_AS_OF`] (each provider's folder holds its own).
    pub fn builtin() -> Self {
        let models = crate::providers::REGISTRY
            .iter()
            .flat_map(|entry| {
                entry.prices.iter().map(|p| {
                    (
                        p.model.to_string(),
                        Price {
                            provider: entry.dialect.name().to_string(),
                            input: p.input,
                            output: p.output,
                            batch_input: p.batch_input,
                            batch_output: p.batch_output,
                            cache_read: p.cache_read,
                            cache_write: p.cache_write,
                            as_of: PRICES_AS_OF.to_string(),
                        },
                    )
                })
            })
            .collect();
        Self { models }
    }

    /// An empty table (every model unpriced).
    pub fn empty() -> Self {
        Self {
            models: BTreeMap::new(),
        }
    }

    /// Adds or replaces a model's prices.
    pub fn set(&mut self, model: impl Into<String>, price: Price) {
        self.models.insert(model.into(), price);
    }

    /// The entry of `model` exactly as named, if any (no snapshot resolution).
    pub fn entry(&self, model: &str) -> Option<&Price> {
        self.models.get(model)
    }

    /// Every entry, by model name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Price)> {
        self.models.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The prices of `model`: its own entry, or that of the name without a snapshot suffix
    /// (`-2024-07-18`, `-20250929`, `-latest`), or without a version (`-v1:0`) and then a
    /// snapshot suffix; failing that, the same for the id after an inference profile's scope
    /// (`us.`, `eu.`, `global.`…). Returns the entry's name with it.
    pub fn lookup(&self, model: &str) -> Option<(&str, &Price)> {
        std::iter::once(model)
            .chain(without_scope(model))
            .find_map(|name| self.lookup_id(name))
    }

    fn lookup_id(&self, model: &str) -> Option<(&str, &Price)> {
        let unversioned = strip_version(model);
        [Some(model), strip_snapshot(model), unversioned]
            .into_iter()
            .chain(std::iter::once(unversioned.and_then(strip_snapshot)))
            .flatten()
            .find_map(|name| self.models.get_key_value(name))
            .map(|(name, price)| (name.as_str(), price))
    }
}

/// A `[prices."model"]` table of the config file. For a model of the built-in table, the fields
/// given replace its prices; a new model needs `input` and `output`. Batch prices default to
/// half the synchronous ones (both providers' discount); `cache_read` and `cache_write` (shares
/// of the input price, 0 to 10) to 1: no cache discount or surcharge.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceOverride {
    pub provider: Option<String>,
    pub input: Option<f64>,
    pub output: Option<f64>,
    pub batch_input: Option<f64>,
    pub batch_output: Option<f64>,
    pub cache_read: Option<f64>,
    pub cache_write: Option<f64>,
    pub as_of: Option<String>,
}

impl PriceTable {
    /// Applies one `[prices."model"]` table; the error says what is wrong with it.
    pub fn apply(&mut self, model: &str, o: &PriceOverride) -> Result<(), String> {
        for (field, value) in [
            ("input", o.input),
            ("output", o.output),
            ("batch_input", o.batch_input),
            ("batch_output", o.batch_output),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(format!(
                    "{field} = {v} must be a non-negative number (USD per million tokens)"
                ));
            }
        }
        for (field, value) in [("cache_read", o.cache_read), ("cache_write", o.cache_write)] {
            if let Some(v) = value
                && !(v.is_finite() && (0.0..=10.0).contains(&v))
            {
                return Err(format!(
                    "{field} = {v} must be a share of the input price from 0 to 10"
                ));
            }
        }
        let mut price = match self.models.get(model) {
            Some(p) => p.clone(),
            None => {
                let (Some(input), Some(output)) = (o.input, o.output) else {
                    return Err(
                        "a model without built-in prices needs `input` and `output` (USD per million tokens)"
                            .into(),
                    );
                };
                Price {
                    provider: String::new(),
                    input,
                    output,
                    batch_input: input / 2.0,
                    batch_output: output / 2.0,
                    cache_read: 1.0,
                    cache_write: 1.0,
                    as_of: String::new(),
                }
            }
        };
        if let Some(v) = o.input {
            price.input = v;
            price.batch_input = o.batch_input.unwrap_or(v / 2.0);
        }
        if let Some(v) = o.output {
            price.output = v;
            price.batch_output = o.batch_output.unwrap_or(v / 2.0);
        }
        if let Some(v) = o.batch_input {
            price.batch_input = v;
        }
        if let Some(v) = o.batch_output {
            price.batch_output = v;
        }
        if let Some(v) = o.cache_read {
            price.cache_read = v;
        }
        if let Some(v) = o.cache_write {
            price.cache_write = v;
        }
        if let Some(p) = &o.provider {
            price.provider = p.clone();
        }
        price.as_of = o.as_of.clone().unwrap_or_else(|| "config".into());
        self.models.insert(model.to_string(), price);
        Ok(())
    }
}

/// `model` without a trailing version `-v<n>` or `-v<n>:<n>`, if it has one.
fn strip_version(model: &str) -> Option<&str> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (base, version) = model.rsplit_once("-v")?;
    let (major, minor) = match version.split_once(':') {
        Some((major, minor)) => (major, Some(minor)),
        None => (version, None),
    };
    (digits(major) && minor.is_none_or(digits)).then_some(base)
}

/// An inference profile's model id without its scope: the first dot-separated word, when it
/// is lowercase letters and dashes and a dotted model id follows (`us.anthropic.claude-…` →
/// `anthropic.claude-…`).
fn without_scope(model: &str) -> Option<&str> {
    let (scope, rest) = model.split_once('.')?;
    (!scope.is_empty()
        && scope.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        && rest.contains('.'))
    .then_some(rest)
}

/// `model` without a trailing snapshot suffix, if it has one.
fn strip_snapshot(model: &str) -> Option<&str> {
    if let Some(base) = model.strip_suffix("-latest") {
        return Some(base);
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // -YYYYMMDD
    if let Some((base, tail)) = model.rsplit_once('-')
        && tail.len() == 8
        && digits(tail)
    {
        return Some(base);
    }
    // -YYYY-MM-DD
    let mut parts = model.rsplitn(4, '-');
    let (d, m, y) = (parts.next()?, parts.next()?, parts.next()?);
    let base = parts.next()?;
    (y.len() == 4 && m.len() == 2 && d.len() == 2 && digits(y) && digits(m) && digits(d))
        .then_some(base)
}

/// Nano-dollars (1e-9 USD) of `tokens` at `per_million` USD per million tokens.
fn nanos(tokens: u64, per_million: f64) -> i64 {
    (tokens as f64 * per_million * 1e3).round() as i64
}

fn dollars(nanos: i64) -> f64 {
    nanos as f64 / 1e9
}

/// Tokens of one model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelTokens {
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The cost of one model's tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelCost {
    /// The model as the requests (or results) named it.
    pub model: String,
    /// The price table entry used.
    pub priced_as: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Of `input_tokens`, those read from the provider's prompt cache.
    #[serde(skip_serializing_if = "is_zero_tokens")]
    pub cache_read_tokens: u64,
    /// Of `input_tokens`, those written to the provider's prompt cache.
    #[serde(skip_serializing_if = "is_zero_tokens")]
    pub cache_write_tokens: u64,
    /// What prompt caching changed in `batch` and `on_demand` against plain input prices.
    #[serde(skip_serializing_if = "is_zero")]
    pub cache_saved: f64,
    pub batch: f64,
    /// Its tokens sent on demand (below a provider's batch minimum), at the synchronous prices.
    #[serde(skip_serializing_if = "is_zero")]
    pub on_demand: f64,
    pub synchronous_equivalent: f64,
    pub prices_as_of: String,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn is_zero_tokens(n: &u64) -> bool {
    *n == 0
}

/// A job's (or an estimate's) cost. Serialises as the `cost` object of summary.json.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    pub currency: &'static str,
    /// At the batch prices: what the provider charges for the batches.
    pub batch: f64,
    /// The requests sent one by one on demand (chunks below a provider's batch minimum), at
    /// the synchronous prices: what the provider charges for them.
    #[serde(skip_serializing_if = "is_zero")]
    pub on_demand: f64,
    /// All the tokens at the synchronous prices.
    pub synchronous_equivalent: f64,
    /// `synchronous_equivalent - batch - on_demand`.
    pub saved: f64,
    /// What prompt caching changed in `batch` and `on_demand` against plain input prices:
    /// saved by cache reads, less the surcharge of cache writes.
    #[serde(skip_serializing_if = "is_zero")]
    pub cache_saved: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub by_model: Vec<ModelCost>,
    /// Tokens of models without prices: left out of the amounts above.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unpriced: Vec<ModelTokens>,
    /// Set when some tokens could not be attributed to the model that produced them and were
    /// priced at the route's default model instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priced_as: Option<String>,
}

impl Cost {
    pub fn zero() -> Self {
        Self {
            currency: CURRENCY,
            batch: 0.0,
            on_demand: 0.0,
            synchronous_equivalent: 0.0,
            saved: 0.0,
            cache_saved: 0.0,
            by_model: Vec::new(),
            unpriced: Vec::new(),
            priced_as: None,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// Adds up tokens per model, then prices them.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    tokens: BTreeMap<String, Usage>,
    /// Tokens sent on demand, not in a batch, per model.
    on_demand: BTreeMap<String, Usage>,
    priced_as: Option<String>,
}

impl Tally {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `input` and `output` tokens of `model`.
    pub fn add(&mut self, model: &str, input: u64, output: u64) {
        self.add_usage(model, &plain(input, output));
    }

    /// Counts tokens of `model` sent on demand (priced at the synchronous prices).
    pub fn add_on_demand(&mut self, model: &str, input: u64, output: u64) {
        self.add_on_demand_usage(model, &plain(input, output));
    }

    /// Counts `usage` of `model`, its cache reads and writes included.
    pub fn add_usage(&mut self, model: &str, usage: &Usage) {
        if !usage.is_empty() {
            self.tokens.entry(model.to_string()).or_default().add(usage);
        }
    }

    /// Counts `usage` of `model` sent on demand (priced at the synchronous prices).
    pub fn add_on_demand_usage(&mut self, model: &str, usage: &Usage) {
        if !usage.is_empty() {
            self.on_demand
                .entry(model.to_string())
                .or_default()
                .add(usage);
        }
    }

    /// Notes that some tokens were attributed to `model` by default.
    pub fn assumed(&mut self, model: &str) {
        self.priced_as = Some(format!(
            "{model} (the route's default model: these results did not name their model)"
        ));
    }

    /// Tokens per model so far.
    pub fn tokens(&self) -> impl Iterator<Item = (&str, &Usage)> {
        self.tokens.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Prices the tokens.
    pub fn cost(&self, prices: &PriceTable) -> Cost {
        let mut cost = Cost::zero();
        let (mut batch_total, mut on_demand_total, mut sync_total) = (0i64, 0i64, 0i64);
        let mut cache_total = 0i64;
        let models: std::collections::BTreeSet<&String> =
            self.tokens.keys().chain(self.on_demand.keys()).collect();
        for model in models {
            let none = Usage::default();
            let batched = self.tokens.get(model).unwrap_or(&none);
            let direct = self.on_demand.get(model).unwrap_or(&none);
            let mut all = batched.clone();
            all.add(direct);
            let (input, output) = (all.input_tokens, all.output_tokens);
            match prices.lookup(model) {
                Some((entry, p)) => {
                    let shares = (p.cache_read, p.cache_write);
                    let batch = priced(batched, p.batch_input, p.batch_output, shares);
                    let on_demand = priced(direct, p.input, p.output, shares);
                    let sync = priced(&all, p.input, p.output, shares);
                    let uncached = priced(batched, p.batch_input, p.batch_output, NO_CACHE)
                        + priced(direct, p.input, p.output, NO_CACHE);
                    let cache_saved = uncached - batch - on_demand;
                    batch_total += batch;
                    on_demand_total += on_demand;
                    sync_total += sync;
                    cache_total += cache_saved;
                    cost.by_model.push(ModelCost {
                        model: model.clone(),
                        priced_as: entry.to_string(),
                        input_tokens: input,
                        output_tokens: output,
                        cache_read_tokens: all.cache_read_tokens,
                        cache_write_tokens: all.cache_write_tokens,
                        cache_saved: dollars(cache_saved),
                        batch: dollars(batch),
                        on_demand: dollars(on_demand),
                        synchronous_equivalent: dollars(sync),
                        prices_as_of: p.as_of.clone(),
                    });
                }
                None => cost.unpriced.push(ModelTokens {
                    model: model.clone(),
                    input_tokens: input,
                    output_tokens: output,
                }),
            }
        }
        cost.batch = dollars(batch_total);
        cost.on_demand = dollars(on_demand_total);
        cost.synchronous_equivalent = dollars(sync_total);
        cost.saved = dollars(sync_total - batch_total - on_demand_total);
        cost.cache_saved = dollars(cache_total);
        cost.priced_as = self.priced_as.clone();
        cost
    }
}

/// Usage without cache reads or writes.
fn plain(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        ..Usage::default()
    }
}

/// Cache shares (read, write) that change nothing: plain input prices.
const NO_CACHE: (f64, f64) = (1.0, 1.0);

/// Nano-dollars of `usage` at `input` and `output` USD per million tokens, cache reads and
/// writes at their `(read, write)` shares of the input price.
fn priced(usage: &Usage, input: f64, output: f64, (read, write): (f64, f64)) -> i64 {
    let cached = usage.cache_read_tokens + usage.cache_write_tokens;
    let plain = usage.input_tokens.saturating_sub(cached);
    nanos(plain, input)
        + nanos(usage.cache_read_tokens, input * read)
        + nanos(usage.cache_write_tokens, input * write)
        + nanos(usage.output_tokens, output)
}

/// The tokens of a job's collected batches, per model: the model each result named
/// (`usage_by_model`), else the chunk's planned model (OpenAI batches hold one model), else
/// `default_model` (the route's), which is then noted in [`Cost::priced_as`].
pub fn job_tally(manifest: &Manifest, default_model: Option<&str>) -> Tally {
    let mut tally = Tally::new();
    for chunk in &manifest.chunks {
        let by_model: Vec<(&str, &Usage)> = if chunk.usage_by_model.is_empty() {
            vec![("", &chunk.usage)]
        } else {
            chunk
                .usage_by_model
                .iter()
                .map(|(m, u)| (m.as_str(), u))
                .collect()
        };
        for (model, usage) in by_model {
            if usage.input_tokens == 0 && usage.output_tokens == 0 {
                continue;
            }
            let model = if !model.is_empty() {
                model
            } else if !chunk.plan.model.is_empty() {
                chunk.plan.model.as_str()
            } else if let Some(default) = default_model {
                tally.assumed(default);
                default
            } else {
                "unknown"
            };
            if chunk.on_demand {
                tally.add_on_demand_usage(model, usage);
            } else {
                tally.add_usage(model, usage);
            }
        }
        // A prompt-cache primer: one request through the synchronous API.
        if let Some(primer) = chunk.primer.as_ref().filter(|u| !u.is_empty()) {
            let model = match chunk.plan.model.as_str() {
                "" => default_model.unwrap_or("unknown"),
                model => model,
            };
            tally.add_on_demand_usage(model, primer);
        }
    }
    tally
}

/// What a job cost so far (its collected batches), at `prices`.
pub fn job_cost(manifest: &Manifest, prices: &PriceTable, default_model: Option<&str>) -> Cost {
    job_tally(manifest, default_model).cost(prices)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(entries: &[(&str, u64, u64)]) -> Tally {
        let mut t = Tally::new();
        for (m, i, o) in entries {
            t.add(m, *i, *o);
        }
        t
    }

    #[test]
    fn one_million_tokens_cost_the_list_price() {
        // GIVEN 1M input and 1M output tokens of gpt-4o-mini ($0.15/$0.60, batch $0.075/$0.30)
        let cost = tally(&[("gpt-4o-mini", 1_000_000, 1_000_000)]).cost(&PriceTable::builtin());
        // THEN batch = 0.075 + 0.30, synchronous = 0.15 + 0.60, saved = the difference
        assert_eq!(cost.batch, 0.375);
        assert_eq!(cost.synchronous_equivalent, 0.75);
        assert_eq!(cost.saved, 0.375);
        assert_eq!(cost.currency, "USD");
    }

    #[test]
    fn several_models_add_up() {
        // GIVEN 2,000 in / 500 out of gpt-4.1 and 10,000 in / 3,000 out of claude-sonnet-4-5
        let cost = tally(&[
            ("gpt-4.1", 2_000, 500),
            ("claude-sonnet-4-5", 10_000, 3_000),
        ])
        .cost(&PriceTable::builtin());
        // gpt-4.1:  batch 2000*1.00/1e6 + 500*4.00/1e6 = 0.002 + 0.002 = 0.004
        //           sync  2000*2.00/1e6 + 500*8.00/1e6 = 0.004 + 0.004 = 0.008
        // sonnet:   batch 10000*1.50/1e6 + 3000*7.50/1e6 = 0.015 + 0.0225 = 0.0375
        //           sync  10000*3.00/1e6 + 3000*15.0/1e6 = 0.03 + 0.045 = 0.075
        assert_eq!(cost.batch, 0.0415);
        assert_eq!(cost.synchronous_equivalent, 0.083);
        assert_eq!(cost.saved, 0.0415);
        assert_eq!(cost.by_model.len(), 2);
        assert_eq!(cost.by_model[1].model, "gpt-4.1");
        assert_eq!(cost.by_model[1].batch, 0.004);
    }

    #[test]
    fn embeddings_have_no_output_price() {
        // 3,000,000 tokens of text-embedding-3-small: batch $0.01/M, sync $0.02/M
        let cost = tally(&[("text-embedding-3-small", 3_000_000, 0)]).cost(&PriceTable::builtin());
        assert_eq!(cost.batch, 0.03);
        assert_eq!(cost.synchronous_equivalent, 0.06);
    }

    #[test]
    fn small_jobs_keep_fractions_of_a_cent() {
        // 114 in / 40 out of gpt-4o-mini: batch 114*0.075 + 40*0.30 = 8.55 + 12 = 20.55 µ$
        let cost = tally(&[("gpt-4o-mini", 114, 40)]).cost(&PriceTable::builtin());
        assert_eq!(cost.batch, 0.00002055);
        assert_eq!(cost.synchronous_equivalent, 0.0000411);
        assert_eq!(cost.saved, 0.00002055);
        // 85 in / 500 out: batch 6.375 + 150 = 156.375 µ$, sync 312.75 µ$, saved exactly half
        let cost = tally(&[("gpt-4o-mini", 85, 500)]).cost(&PriceTable::builtin());
        assert_eq!(cost.batch, 0.000156375);
        assert_eq!(cost.synchronous_equivalent, 0.00031275);
        assert_eq!(cost.saved, 0.000156375);
    }

    #[test]
    fn dated_snapshots_use_their_model_entry() {
        let prices = PriceTable::builtin();
        assert_eq!(
            prices.lookup("gpt-4o-mini-2024-07-18").unwrap().0,
            "gpt-4o-mini"
        );
        assert_eq!(
            prices.lookup("claude-sonnet-4-5-20250929").unwrap().0,
            "claude-sonnet-4-5"
        );
        assert_eq!(
            prices.lookup("claude-3-5-haiku-latest").unwrap().0,
            "claude-3-5-haiku"
        );
        assert_eq!(prices.lookup("gpt-4o").unwrap().0, "gpt-4o");
        // not a snapshot of gpt-4o: no guess
        assert!(prices.lookup("gpt-4o-audio-preview").is_none());
        assert!(prices.lookup("gpt-4.1-turbo").is_none());
    }

    #[test]
    fn versioned_and_profile_model_ids_use_their_model_entry() {
        let prices = PriceTable::builtin();
        assert_eq!(
            prices
                .lookup("us.anthropic.claude-sonnet-4-5-20250929-v1:0")
                .unwrap()
                .0,
            "anthropic.claude-sonnet-4-5"
        );
        assert_eq!(
            prices.lookup("amazon.nova-micro-v1:0").unwrap().0,
            "amazon.nova-micro"
        );
        // a scope word alone is not a model id: no guess
        assert!(prices.lookup("us.claude-sonnet-4-5").is_none());
        assert!(prices.lookup("amazon.nova-lite-vx").is_none());
    }

    #[test]
    fn unknown_models_are_reported_not_priced() {
        let cost = tally(&[("gpt-4o-mini", 1_000_000, 0), ("my-finetune", 500, 7)])
            .cost(&PriceTable::builtin());
        assert_eq!(cost.batch, 0.075);
        assert_eq!(
            cost.unpriced,
            vec![ModelTokens {
                model: "my-finetune".into(),
                input_tokens: 500,
                output_tokens: 7
            }]
        );
    }

    #[test]
    fn an_overridden_price_is_used() {
        let mut prices = PriceTable::builtin();
        prices.set(
            "gpt-4o-mini",
            Price {
                provider: "openai".into(),
                input: 1.0,
                output: 2.0,
                batch_input: 0.5,
                batch_output: 1.0,
                cache_read: 1.0,
                cache_write: 1.0,
                as_of: "2026-01-01".into(),
            },
        );
        let cost = tally(&[("gpt-4o-mini", 1_000_000, 1_000_000)]).cost(&prices);
        assert_eq!(
            (cost.batch, cost.synchronous_equivalent, cost.saved),
            (1.5, 3.0, 1.5)
        );
        assert_eq!(cost.by_model[0].prices_as_of, "2026-01-01");
    }

    #[test]
    fn summary_cost_serialises_with_the_agreed_fields() {
        let v = tally(&[("gpt-4o-mini", 1_000_000, 0)])
            .cost(&PriceTable::builtin())
            .to_json();
        assert_eq!(v["currency"], "USD");
        assert_eq!(v["batch"], 0.075);
        assert_eq!(v["synchronous_equivalent"], 0.15);
        assert_eq!(v["saved"], 0.075);
        assert!(v.get("unpriced").is_none());
        assert!(v.get("priced_as").is_none());
    }

    fn cached(input: u64, output: u64, read: u64, write: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: read,
            cache_write_tokens: write,
        }
    }

    #[test]
    fn openai_cached_input_costs_the_cached_share_of_the_input_price() {
        // GIVEN 1M input tokens of gpt-4o-mini of which 600k were cached (0.5 of the input
        // price: batch $0.075/M plain, $0.0375/M cached)
        let mut t = Tally::new();
        t.add_usage("gpt-4o-mini", &cached(1_000_000, 0, 600_000, 0));
        let cost = t.cost(&PriceTable::builtin());
        // THEN batch = 400k * 0.075 + 600k * 0.0375 = 0.03 + 0.0225; sync at 0.15 / 0.075
        assert_eq!(cost.batch, 0.0525);
        assert_eq!(cost.synchronous_equivalent, 0.105);
        assert_eq!(cost.cache_saved, 0.0225);
        assert_eq!(cost.by_model[0].cache_read_tokens, 600_000);
        assert_eq!(cost.by_model[0].cache_saved, 0.0225);
    }

    #[test]
    fn anthropic_cache_reads_cost_a_tenth_and_writes_a_quarter_more() {
        // GIVEN claude-sonnet-4-5 (batch input $1.50/M): 1M input tokens, 100k written to the
        // cache, 800k read from it
        let mut t = Tally::new();
        t.add_usage("claude-sonnet-4-5", &cached(1_000_000, 0, 800_000, 100_000));
        let cost = t.cost(&PriceTable::builtin());
        // THEN 100k plain * 1.50 + 800k * 0.15 + 100k * 1.875 = 0.15 + 0.12 + 0.1875
        assert_eq!(cost.batch, 0.4575);
        // AND against 1M plain ($1.50) caching saved 1.5 - 0.4575
        assert_eq!(cost.cache_saved, 1.0425);
    }

    #[test]
    fn a_cold_cache_write_costs_more_than_plain_input() {
        let mut t = Tally::new();
        t.add_usage("claude-haiku-4-5", &cached(1_000_000, 0, 0, 1_000_000));
        let cost = t.cost(&PriceTable::builtin());
        // 1M written at 1.25 * $0.50/M
        assert_eq!(cost.batch, 0.625);
        assert_eq!(cost.cache_saved, -0.125);
    }

    #[test]
    fn cache_shares_can_be_overridden_and_are_checked() {
        let mut prices = PriceTable::builtin();
        let o = PriceOverride {
            cache_read: Some(0.25),
            ..PriceOverride::default()
        };
        prices.apply("gpt-4o-mini", &o).unwrap();
        assert_eq!(prices.entry("gpt-4o-mini").unwrap().cache_read, 0.25);
        let bad = PriceOverride {
            cache_write: Some(-1.0),
            ..PriceOverride::default()
        };
        assert!(
            prices
                .apply("gpt-4o-mini", &bad)
                .unwrap_err()
                .contains("cache_write")
        );
    }

    #[test]
    fn builtin_batch_prices_are_half_the_synchronous_ones() {
        for (model, p) in PriceTable::builtin().iter() {
            assert_eq!(p.batch_input * 2.0, p.input, "{model}");
            assert_eq!(p.batch_output * 2.0, p.output, "{model}");
        }
    }
}
