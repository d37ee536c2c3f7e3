//! One readable line per job event, for a person watching `batchdrop local`.

use batchdrop_core::engine::{JobEvent, Observer};

#[derive(Debug, Default)]
pub struct Printer;

fn short(job_id: &str) -> &str {
    &job_id[..job_id.len().min(10)]
}

impl Observer for Printer {
    fn event(&self, event: &JobEvent) {
        let line = match event {
            JobEvent::Planning {
                job_id,
                key,
                from_line,
            } => match from_line {
                0 => format!("job {} planning {key}", short(job_id)),
                n => format!("job {} planning {key} from line {}", short(job_id), n + 1),
            },
            JobEvent::PlanningPaused {
                job_id,
                lines,
                offset,
                bytes,
            } => format!(
                "job {} planning paused at line {lines} ({offset} of {bytes} bytes); the next poll continues",
                short(job_id)
            ),
            JobEvent::Started {
                job_id,
                key,
                counts,
                chunks,
            } => format!(
                "job {} started: {key} — {} lines, {} accepted, {} rejected, {chunks} batch(es)",
                short(job_id),
                counts.lines,
                counts.accepted,
                counts.rejected
            ),
            JobEvent::BatchSubmitted {
                job_id,
                chunk,
                batch_id,
                requests,
            } => format!(
                "job {} batch {chunk} submitted: {batch_id} ({requests} requests)",
                short(job_id)
            ),
            JobEvent::BatchProgress {
                job_id,
                chunk,
                status,
                completed,
                failed,
                total,
                ..
            } => format!(
                "job {} batch {chunk} {status}: {completed}/{total} done, {failed} failed",
                short(job_id)
            ),
            JobEvent::BatchCollected {
                job_id,
                chunk,
                status,
                succeeded,
                failed,
                ..
            } => format!(
                "job {} batch {chunk} {status}: {succeeded} succeeded, {failed} failed",
                short(job_id)
            ),
            JobEvent::Finished {
                job_id,
                status,
                results_prefix,
                counts,
                reason,
            } => {
                let mut line = format!(
                    "job {} {}: {} succeeded, {} failed, {} rejected → {results_prefix}",
                    short(job_id),
                    status.as_str(),
                    counts.succeeded,
                    counts.failed,
                    counts.rejected
                );
                if let Some(reason) = reason {
                    line.push_str(&format!(" ({reason})"));
                }
                line
            }
            JobEvent::WebhookDelivered {
                job_id,
                event_type,
                attempt,
                ..
            } => format!(
                "job {} webhook {event_type} delivered (attempt {attempt})",
                short(job_id)
            ),
            JobEvent::WebhookFailed {
                job_id,
                event_type,
                attempt,
                error,
                retry_at,
                ..
            } => format!(
                "job {} webhook {event_type} attempt {attempt} failed: {error}; {}",
                short(job_id),
                match retry_at {
                    Some(at) => format!("next attempt at {at}"),
                    None => "given up".to_string(),
                }
            ),
        };
        println!("{line}");
    }
}
