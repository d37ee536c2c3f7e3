//! ListModelInvocationJobs' query string as botocore sends it: percent-encoded
//! `statusEquals`, `nameContains`, `submitTimeAfter`/`submitTimeBefore` (ISO 8601),
//! `maxResults`, `nextToken`, `sortBy`, `sortOrder`, checked as the service model constrains
//! them (a bad value is a `ValidationException` in AWS's wording). Unknown parameters are
//! ignored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::ApiError;
use super::store::Filter;
use super::timeline::Status;

/// The most jobs one page lists, and the default.
const MAX_LIST_RESULTS: usize = 1000;

/// The listing's query string, as botocore sends it.
pub(crate) fn list_filter(query: &str) -> Result<Filter, ApiError> {
    let mut filter = Filter {
        max_results: MAX_LIST_RESULTS,
        ..Filter::default()
    };
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        let bad = |constraint: &str| {
            ApiError::validation(format!(
                "1 validation error detected: Value '{value}' at '{key}' failed to satisfy constraint: {constraint}"
            ))
        };
        match key {
            "statusEquals" => {
                let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
                filter.status = Some(Status::parse(&value).ok_or_else(|| {
                    bad(&format!(
                        "Member must satisfy enum value set: [{}]",
                        statuses.join(", ")
                    ))
                })?);
            }
            "nameContains" => filter.name_contains = Some(value.clone()),
            "submitTimeAfter" => {
                filter.submitted_after =
                    Some(parse_time(&value).ok_or_else(|| bad("Member must be a timestamp"))?);
            }
            "submitTimeBefore" => {
                filter.submitted_before =
                    Some(parse_time(&value).ok_or_else(|| bad("Member must be a timestamp"))?);
            }
            "maxResults" => {
                filter.max_results = value
                    .parse::<usize>()
                    .ok()
                    .filter(|max| (1..=MAX_LIST_RESULTS).contains(max))
                    .ok_or_else(|| {
                        bad("Member must have value greater than or equal to 1 and less than or equal to 1000")
                    })?;
            }
            "nextToken" => filter.next_token = Some(value.clone()),
            "sortBy" if value != "CreationTime" => {
                return Err(bad("Member must satisfy enum value set: [CreationTime]"));
            }
            "sortOrder" => {
                filter.ascending = match value.as_str() {
                    "Ascending" => true,
                    "Descending" => false,
                    _ => {
                        return Err(bad(
                            "Member must satisfy enum value set: [Ascending, Descending]",
                        ));
                    }
                };
            }
            _ => {}
        }
    }
    Ok(filter)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' if at + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[at + 1..at + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        at += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        at += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                at += 1;
            }
            byte => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An ISO 8601 timestamp (`2023-11-14T22:13:20Z`, fractions and `+00:00` accepted) or Unix
/// seconds.
fn parse_time(text: &str) -> Option<SystemTime> {
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds >= 0.0).then(|| UNIX_EPOCH + Duration::from_secs_f64(seconds));
    }
    let text = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once('T')?;
    let mut date_parts = date.split('-').map(|part| part.parse::<i64>().ok());
    let (year, month, day) = (
        date_parts.next()??,
        date_parts.next()??,
        date_parts.next()??,
    );
    let (whole, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut time_parts = whole.split(':').map(|part| part.parse::<i64>().ok());
    let (hour, minute, second) = (
        time_parts.next()??,
        time_parts.next()??,
        time_parts.next()??,
    );
    let nanos = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").get(..9)?.parse::<u32>().ok()?
    };
    // Days from civil (Howard Hinnant).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(seconds)
        .ok()
        .map(|seconds| UNIX_EPOCH + Duration::new(seconds, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_as_botocore_sends_them() {
        let at = |seconds: u64| Some(UNIX_EPOCH + Duration::from_secs(seconds));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), at(1_700_000_000));
        assert_eq!(
            parse_time("2023-11-14T22:13:20.5Z"),
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_500))
        );
        assert_eq!(parse_time("1700000000"), at(1_700_000_000));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(
            percent_decode("2023-11-14T22%3A13%3A20Z"),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(percent_decode("a+b%2"), "a b%2");
    }
}
