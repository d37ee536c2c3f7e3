//! Small text helpers shared by the commands: sizes, dollar amounts, durations, shell quoting.

/// Human-readable size.
pub fn bytes_human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// An amount of dollars: cents for large amounts, every significant digit down to 1e-9 for
/// small ones.
pub fn usd(amount: f64) -> String {
    if amount >= 1.0 || amount == 0.0 {
        return format!("${amount:.2}");
    }
    let s = format!("{amount:.9}");
    let s = s.trim_end_matches('0');
    let decimals = s.split_once('.').map_or(0, |(_, d)| d.len());
    if decimals < 2 {
        format!("${amount:.2}")
    } else {
        format!("${s}")
    }
}

/// A duration as a clock: `1:02:05`, `1d 01:01:01`.
pub fn elapsed_words(seconds: i64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        (seconds / 3600) % 24,
        (seconds / 60) % 60,
        seconds % 60,
    );
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h}:{m:02}:{s:02}")
    }
}

/// Quotes a word for a shell if it needs it.
pub fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_keep_small_amounts_readable() {
        assert_eq!(usd(0.0), "$0.00");
        assert_eq!(usd(12.5), "$12.50");
        assert_eq!(usd(0.375), "$0.375");
        assert_eq!(usd(0.1), "$0.10");
        assert_eq!(usd(0.00002055), "$0.00002055");
        assert_eq!(usd(0.0000000001), "$0.00");
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(bytes_human(512), "512 B");
        assert_eq!(bytes_human(2048), "2.0 KiB");
        assert_eq!(bytes_human(10 << 20), "10.0 MiB");
    }
}
