//! A job's output.jsonl in an API's own result shape: the route's provider's result lines
//! passed on as they are when that provider writes the API's format, else each line read into
//! the common result and written in the API's shape ([`translate_result`]). Streamed line by
//! line: memory holds one line, whatever the file's size.

use batchdrop_core::provider::{Dialect, translate_result};
use batchdrop_core::providers;
use bytes::Bytes;
use futures::Stream;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The dialect of the result lines a route's provider writes; the API's own when the
/// provider is unknown (a route removed from the config: its lines are passed on).
pub fn route_dialect(provider: &str, api: &'static dyn Dialect) -> &'static dyn Dialect {
    providers::dialect(provider).unwrap_or(api)
}

/// Whether output.jsonl of a `from` route is served without translation to `api`.
pub fn as_is(from: &dyn Dialect, api: &dyn Dialect) -> bool {
    from.format() == api.format()
}

/// The lines of `reader` (output.jsonl of a `from` route) in `api`'s result shape; blank lines
/// are skipped, every line ends with a newline.
pub fn translated(
    reader: Box<dyn AsyncBufRead + Send + Unpin>,
    from: &'static dyn Dialect,
    api: &'static dyn Dialect,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    lines(reader)
        .map(move |line| {
            line.map(|(n, line)| {
                let mut out = translate_result(&line, from, api, &format!("line {n}"));
                out.push(b'\n');
                Bytes::from(out)
            })
        })
        .boxed()
}

/// The non-blank lines of `reader`, with their 1-based numbers, without their newline.
pub fn lines(
    reader: Box<dyn AsyncBufRead + Send + Unpin>,
) -> impl Stream<Item = std::io::Result<(u64, Vec<u8>)>> + Send + 'static {
    futures::stream::try_unfold((0u64, reader), |(mut n, mut reader)| async move {
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).await? == 0 {
                return Ok(None);
            }
            n += 1;
            if !line.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        let trimmed = line.trim_ascii().to_vec();
        Ok(Some(((n, trimmed), (n, reader))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[tokio::test]
    async fn anthropic_lines_are_served_as_openai_lines_one_for_one() -> std::io::Result<()> {
        let input = b"{\"custom_id\":\"a\",\"result\":{\"type\":\"canceled\"}}\n\n{\"custom_id\":\"b\",\"result\":{\"type\":\"expired\"}}\n";
        let reader: Box<dyn AsyncBufRead + Send + Unpin> = Box::new(&input[..]);
        let from = providers::dialect("anthropic").map_err(std::io::Error::other)?;
        let api = providers::dialect("openai").map_err(std::io::Error::other)?;
        let parts: Vec<Bytes> = translated(reader, from, api).try_collect().await?;
        let text: String = parts.iter().map(|b| String::from_utf8_lossy(b)).collect();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("\"batch_cancelled\"") && lines[1].contains("\"batch_expired\""));
        Ok(())
    }
}
