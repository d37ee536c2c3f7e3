//! What a user names a job by on the command line: its upload's path (`route/path`, in any form
//! the bucket shows it) or its id (or the start of one).

use crate::error::Error;
use crate::text::shell_word;
use batchdrop_core::config::Config;
use batchdrop_core::layout::{self, InboxKey};
use batchdrop_core::manifest::Manifest;

/// What a user names a job by: its upload's path or its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `route/path` (also accepted: `inbox/route/path.jsonl`, `results/route/path/`,
    /// `cancel/route/path.jsonl`).
    Path(InboxKey),
    /// A job id, or a prefix of one (at least 4 characters).
    Job(String),
}

impl Selector {
    /// Parses a `PATH|JOB` argument; a usage error if it is neither.
    pub fn parse(s: &str) -> Result<Selector, Error> {
        let s = s.trim();
        if !s.contains('/') {
            if s.len() >= 4
                && s.len() <= 24
                && s.starts_with('j')
                && s[1..].bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Ok(Selector::Job(s.to_string()));
            }
            return Err(Error::usage(format!(
                "{s:?} is neither a path (route/path, e.g. sandbox/run1/requests) nor a job id (j…)"
            )));
        }
        parse_path(s).map(Selector::Path)
    }

    pub fn matches(&self, m: &Manifest) -> bool {
        match self {
            Selector::Path(k) => m.input.key == k.key(),
            Selector::Job(id) => m.job_id.starts_with(id.as_str()),
        }
    }
}

/// `route/path` in any of the forms the bucket shows it; a usage error otherwise.
pub fn parse_path(s: &str) -> Result<InboxKey, Error> {
    let mut rest = s.trim();
    for prefix in [layout::INBOX, layout::RESULTS, layout::CANCEL] {
        if let Some(r) = rest.strip_prefix(prefix) {
            rest = r;
            break;
        }
    }
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix(layout::SUFFIX).unwrap_or(rest);
    let key = format!("{}{rest}{}", layout::INBOX, layout::SUFFIX);
    InboxKey::parse(&key).ok_or_else(|| {
        Error::usage(format!(
            "{s:?} is not a path of the form route/path (e.g. sandbox/run1/requests)"
        ))
    })
}

/// A hint when a path's first segment is not a route of `config` (paths start with the route).
pub fn route_hint(config: &Config, selector: &Selector) -> String {
    match selector {
        Selector::Path(k) if config.route(&k.route).is_none() => format!(
            " — {:?} is not a route ({}): a path starts with its route, e.g. sandbox/{}/{}",
            k.route,
            config.route_names().join(", "),
            k.route,
            k.path
        ),
        _ => String::new(),
    }
}

/// `route/path`, shell-quoted.
pub fn inbox_path(k: &InboxKey) -> String {
    shell_word(&format!("{}/{}", k.route, k.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_accepted_in_every_form_the_bucket_shows() {
        for s in [
            "sandbox/run 1/requests",
            "sandbox/run 1/requests.jsonl",
            "inbox/sandbox/run 1/requests.jsonl",
            "results/sandbox/run 1/requests/",
            "cancel/sandbox/run 1/requests.jsonl",
        ] {
            let k = parse_path(s).unwrap();
            assert_eq!(
                (k.route.as_str(), k.path.as_str()),
                ("sandbox", "run 1/requests"),
                "{s}"
            );
        }
        assert!(parse_path("sandbox").is_err());
        assert!(parse_path("sandbox/").is_err());
    }

    #[test]
    fn job_ids_and_paths_are_told_apart() {
        assert_eq!(
            Selector::parse("j3f9c").unwrap(),
            Selector::Job("j3f9c".into())
        );
        assert!(matches!(
            Selector::parse("openai/x").unwrap(),
            Selector::Path(_)
        ));
        assert!(Selector::parse("requests").is_err());
    }
}
