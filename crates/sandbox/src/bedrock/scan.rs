//! A job's validation: its input files found and read once, line by line as they stream in
//! (never whole), to count the records and judge the input as the real service does.
//!
//! The input URI names one object, or (when its key does not end in `.jsonl`) a folder whose
//! `.jsonl` objects are all read, in key order. The job fails, with a message in the
//! service's words, when there is no input, a file is over [`MAX_FILE_BYTES`], a line is not a
//! record (see `input::record`), or the records are fewer than the minimum or more than
//! [`MAX_RECORDS`].

use tokio::io::AsyncBufReadExt;

use super::input;
use super::objects::{ObjectUri, Objects, ObjectsError};

/// The largest input file, in bytes (Bedrock's 1 GB per file quota).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024 * 1024;
/// The most records a job may hold (Bedrock's 50,000 records per job quota).
pub const MAX_RECORDS: usize = 50_000;

/// One input file and its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InputFile {
    pub uri: ObjectUri,
    pub records: usize,
}

/// A job's input, judged good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scanned {
    pub files: Vec<InputFile>,
}

impl Scanned {
    pub(crate) fn records(&self) -> usize {
        self.files.iter().map(|file| file.records).sum()
    }
}

/// Reads the job's input; `Err` is the job's failure message.
pub(crate) async fn scan(
    objects: &dyn Objects,
    input: &ObjectUri,
    job_arn: &str,
    min_records: usize,
) -> Result<Scanned, String> {
    let files = input_files(objects, input).await?;
    let mut scanned = Scanned {
        files: Vec::with_capacity(files.len()),
    };
    for uri in files {
        let records = count(objects, &uri).await?;
        scanned.files.push(InputFile { uri, records });
    }
    let records = scanned.records();
    if records < min_records {
        return Err(format!(
            "Batch job {job_arn} contains less records ({records}) than the required minimum of: {min_records}"
        ));
    }
    if records > MAX_RECORDS {
        return Err(format!(
            "Batch job {job_arn} contains more records ({records}) than the allowed maximum of: {MAX_RECORDS}"
        ));
    }
    Ok(scanned)
}

/// The objects a job reads: the one named, or the `.jsonl` ones under the folder named.
pub(crate) async fn input_files(
    objects: &dyn Objects,
    input: &ObjectUri,
) -> Result<Vec<ObjectUri>, String> {
    if input.key.ends_with(".jsonl") {
        return Ok(vec![input.clone()]);
    }
    let mut folder = input.clone();
    if !folder.key.is_empty() && !folder.key.ends_with('/') {
        folder.key.push('/');
    }
    let listed = objects
        .list(&folder)
        .await
        .map_err(|error| format!("Could not list the input location {folder}: {error}"))?;
    let files: Vec<ObjectUri> = listed
        .into_iter()
        .filter(|object| object.uri.key.ends_with(".jsonl"))
        .map(|object| object.uri)
        .collect();
    if files.is_empty() {
        return Err(format!(
            "No input files were found in {input}: it must be a .jsonl object or a folder holding .jsonl objects"
        ));
    }
    Ok(files)
}

/// The records of one file, each line checked.
async fn count(objects: &dyn Objects, uri: &ObjectUri) -> Result<usize, String> {
    let mut reader = objects.get(uri).await.map_err(|error| match error {
        ObjectsError::NotFound { .. } => format!("The input file {uri} does not exist"),
        other => format!("Could not read the input file {uri}: {other}"),
    })?;
    let name = uri.to_string();
    let mut line = Vec::new();
    let (mut bytes, mut number, mut records) = (0u64, 0u64, 0usize);
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .await
            .map_err(|error| format!("Could not read the input file {uri}: {error}"))?;
        if read == 0 {
            break;
        }
        bytes += read as u64;
        if bytes > MAX_FILE_BYTES {
            return Err(format!(
                "The input file {uri} is larger than the maximum file size of {MAX_FILE_BYTES} bytes (1 GB)"
            ));
        }
        number += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        input::record(&line, &name, number)?;
        records += 1;
    }
    Ok(records)
}
