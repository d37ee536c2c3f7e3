//! The Batch API's ids: how batchdrop makes them and the strict form an id taken from a URL
//! must have before it names anything.
//!
//! Every id is a prefix and a token of [`TOKEN_LEN`] lowercase hex digits, nothing else:
//!
//! - `file-<token>`: a file uploaded with `POST /v1/files` (random token);
//! - `batch_<token>`: a batch; its token starts with the creation time counted down (12 hex
//!   digits of milliseconds below 16⁻¹²), then 12 random digits, so that the batches of a
//!   tenant listed in key order come newest first;
//! - `msgbatch_<token>`: the same batch as `batch_<token>`, as the Anthropic API names it
//!   (every batch is served by both APIs);
//! - `file-out-<batch token>` and `file-err-<batch token>`: a batch's output and error files;
//! - `upload_<token>` and `part_<token>`: an upload in parts (the Uploads API) and one of its
//!   parts (random tokens; a part is only looked up under its upload).
//!
//! An id that is not exactly one of these (`../x`, `file-%2F..`, an upper-case token) names
//! nothing: the caller answers 404 without touching the bucket. A token is only ever looked
//! up under the caller's own tenant prefix, so another tenant's id names nothing either.

/// Hex digits of every token.
pub const TOKEN_LEN: usize = 24;
const FILE: &str = "file-";
const OUTPUT: &str = "file-out-";
const ERRORS: &str = "file-err-";
const BATCH: &str = "batch_";
const MESSAGE_BATCH: &str = "msgbatch_";
const UPLOAD: &str = "upload_";
const PART: &str = "part_";
/// Milliseconds are counted down from here (16¹² ms is year 10889).
const TIME_TOP: i64 = 0xffff_ffff_ffff;

/// A file id, by what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileId {
    /// An uploaded file.
    Upload(String),
    /// The output file of the batch with this token.
    Output(String),
    /// The error file of the batch with this token.
    Errors(String),
}

impl FileId {
    /// The id as the API shows it.
    pub fn id(&self) -> String {
        match self {
            FileId::Upload(t) => format!("{FILE}{t}"),
            FileId::Output(t) => format!("{OUTPUT}{t}"),
            FileId::Errors(t) => format!("{ERRORS}{t}"),
        }
    }

    /// Reads an id from a URL or a request body; `None` unless it is exactly one of the forms.
    pub fn parse(id: &str) -> Option<FileId> {
        if let Some(token) = id.strip_prefix(OUTPUT) {
            return is_token(token).then(|| FileId::Output(token.to_string()));
        }
        if let Some(token) = id.strip_prefix(ERRORS) {
            return is_token(token).then(|| FileId::Errors(token.to_string()));
        }
        let token = id.strip_prefix(FILE)?;
        is_token(token).then(|| FileId::Upload(token.to_string()))
    }
}

/// A message batch id's token, if `id` is exactly `msgbatch_<token>` (the Anthropic API's name
/// of the batch `batch_<token>`: one batch, one token, two names).
pub fn message_batch_token(id: &str) -> Option<&str> {
    id.strip_prefix(MESSAGE_BATCH).filter(|t| is_token(t))
}

/// The Anthropic API's id of the batch with this token.
pub fn message_batch_id(token: &str) -> String {
    format!("{MESSAGE_BATCH}{token}")
}

/// A batch id's token, if `id` is exactly `batch_<token>`.
pub fn batch_token(id: &str) -> Option<&str> {
    id.strip_prefix(BATCH).filter(|t| is_token(t))
}

/// The id of the batch with this token.
pub fn batch_id(token: &str) -> String {
    format!("{BATCH}{token}")
}

/// An upload id's token, if `id` is exactly `upload_<token>`.
pub fn upload_token(id: &str) -> Option<&str> {
    id.strip_prefix(UPLOAD).filter(|t| is_token(t))
}

/// The id of the upload with this token.
pub fn upload_id(token: &str) -> String {
    format!("{UPLOAD}{token}")
}

/// A part id's token, if `id` is exactly `part_<token>`.
pub fn part_token(id: &str) -> Option<&str> {
    id.strip_prefix(PART).filter(|t| is_token(t))
}

/// The id of the part with this token.
pub fn part_id(token: &str) -> String {
    format!("{PART}{token}")
}

/// A new random file token (also an upload's and a part's).
pub fn new_file_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_LEN / 2];
    getrandom::getrandom(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// A new batch token for a batch created at `unix_millis`: later batches sort first.
pub fn new_batch_token(unix_millis: i64) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_LEN / 4];
    getrandom::getrandom(&mut bytes)?;
    let countdown = (TIME_TOP - unix_millis.clamp(0, TIME_TOP)) as u64;
    Ok(format!("{countdown:012x}{}", hex::encode(bytes)))
}

fn is_token(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_ids_read_back_as_what_they_name() -> Result<(), getrandom::Error> {
        let file = new_file_token()?;
        assert_eq!(
            FileId::parse(&FileId::Upload(file.clone()).id()),
            Some(FileId::Upload(file))
        );
        let batch = new_batch_token(1_767_225_600_000)?;
        assert_eq!(batch_token(&batch_id(&batch)), Some(batch.as_str()));
        assert_eq!(
            message_batch_token(&message_batch_id(&batch)),
            Some(batch.as_str())
        );
        assert_eq!(message_batch_token(&batch_id(&batch)), None);
        assert_eq!(message_batch_token("msgbatch_../x"), None);
        assert_eq!(
            FileId::parse(&FileId::Output(batch.clone()).id()),
            Some(FileId::Output(batch.clone()))
        );
        assert_eq!(
            FileId::parse(&FileId::Errors(batch.clone()).id()),
            Some(FileId::Errors(batch))
        );
        Ok(())
    }

    #[test]
    fn crafted_ids_name_nothing() {
        let token = "0123456789abcdef01234567";
        for id in [
            "../x",
            "file-../../x",
            "file-%2F..",
            "file-/..",
            "file-0123456789ABCDEF01234567",
            "file-0123456789abcdef0123456",
            "file-0123456789abcdef012345678",
            "file-0123456789abcdef0123456/",
            "batch_0123456789abcdef01234567",
            "",
        ] {
            assert_eq!(FileId::parse(id), None, "{id:?}");
        }
        assert_eq!(
            FileId::parse(&format!("file-{token}")),
            Some(FileId::Upload(token.into()))
        );
        for id in [
            "batch_../x",
            "batch_",
            "file-0123456789abcdef01234567",
            "batch_0123456789abcdef0123456g",
        ] {
            assert_eq!(batch_token(id), None, "{id:?}");
        }
    }

    #[test]
    fn upload_and_part_ids_take_only_their_own_form() -> Result<(), getrandom::Error> {
        let token = new_file_token()?;
        assert_eq!(upload_token(&upload_id(&token)), Some(token.as_str()));
        assert_eq!(part_token(&part_id(&token)), Some(token.as_str()));
        for id in ["upload_../x", "upload_", "part_%2F", &part_id(&token)] {
            assert_eq!(upload_token(id), None, "{id:?}");
        }
        assert_eq!(part_token(&upload_id(&token)), None);
        Ok(())
    }

    #[test]
    fn later_batches_sort_first() -> Result<(), getrandom::Error> {
        let earlier = new_batch_token(1_767_225_600_000)?;
        let later = new_batch_token(1_767_225_600_001)?;
        assert!(later < earlier);
        Ok(())
    }
}
