//! The trainer's progress stream: one [`Event`] per line of stdout, as JSON
//! with an `event` tag (`{"event":"step","step":3,…}`). The training log
//! (`log.jsonl`, part of the cached result) holds the `step` events without
//! the throughput, which differs between runs.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One line of the trainer's stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Work begins: how many steps there will be.
    Start(Start),
    /// One optimizer step of training.
    Step(Step),
    /// Progress of an inference job (one batch of one variant).
    Progress {
        /// Units done so far.
        step: u64,
        /// Units in all.
        steps: u64,
        /// The variant being run.
        variant: String,
    },
    /// Training continues from a checkpoint.
    Resume {
        /// The step it continues after.
        step: u64,
        /// The checkpoint directory.
        from: PathBuf,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Step saved.
        step: u64,
        /// Where.
        dir: PathBuf,
    },
    /// Something worth a line in the stage log.
    Note {
        /// The text.
        message: String,
    },
    /// The job finished.
    Done(Done),
}

/// The first event of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Start {
    /// Steps (training) or units of work (inference) to come.
    pub steps: u64,
    /// The trainer's implementation identity ([`crate::TRAINER`] as it was
    /// compiled into the binary that runs).
    pub trainer: String,
    /// Training rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Parameters that train.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainable_parameters: Option<u64>,
    /// Bytes of model weights in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_bytes: Option<u64>,
    /// The device, as libtorch names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The compute kind, as libtorch names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
}

/// One optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Steps done (1-based).
    pub step: u64,
    /// Steps in all.
    pub steps: u64,
    /// The epoch the step belongs to (0-based).
    pub epoch: u64,
    /// Training loss of the step (mean over its target tokens).
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Target tokens in the step.
    pub tokens: u64,
    /// Validation loss, on the steps that measure it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Training tokens per second (stdout only; not in `log.jsonl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
}

/// What a training job produced (`metrics.json` in its output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainMetrics {
    /// Optimizer steps taken.
    pub steps: u64,
    /// Loss of the last step.
    pub train_loss: Option<f64>,
    /// Last validation loss.
    pub val_loss: Option<f64>,
    /// Target tokens trained on.
    pub tokens: u64,
    /// Parameters that trained.
    pub trainable_parameters: u64,
    /// Bytes of model weights in memory.
    pub weight_bytes: u64,
}

/// The last event of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    /// Training results (absent for inference).
    #[serde(default)]
    pub metrics: Option<TrainMetrics>,
    /// Tokens per second of this attempt's training steps (evaluation and
    /// checkpoints excluded; for inference, of generation).
    #[serde(default)]
    pub tokens_per_s: Option<f64>,
    /// Seconds this attempt took.
    #[serde(default)]
    pub seconds: Option<f64>,
    /// Peak resident memory of the trainer, MiB.
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
}

impl Event {
    /// The event as one JSON line (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("events serialise: plain structs of numbers and strings")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_tagged_lines() {
        let evs = [
            Event::Start(Start {
                steps: 3,
                trainer: crate::TRAINER.into(),
                rows: Some(9),
                trainable_parameters: None,
                weight_bytes: None,
                device: None,
                dtype: None,
            }),
            Event::Step(Step { step: 1, steps: 3, epoch: 0, loss: 2.5, lr: 1e-4, grad_norm: 0.5, tokens: 40, val_loss: None, tokens_per_s: Some(10.0) }),
            Event::Progress { step: 1, steps: 2, variant: "tuned".into() },
            Event::Resume { step: 2, from: "ck".into() },
            Event::Checkpoint { step: 2, dir: "ck".into() },
            Event::Note { message: "hi".into() },
            Event::Done(Done { metrics: None, tokens_per_s: None, seconds: Some(1.0), peak_rss_mib: None }),
        ];
        for e in evs {
            let line = e.to_line();
            assert!(line.starts_with("{\"event\":"), "{line}");
            assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);
        }
        let step: serde_json::Value = serde_json::from_str(
            &Event::Step(Step { step: 1, steps: 1, epoch: 0, loss: 1.0, lr: 0.0, grad_norm: 0.0, tokens: 1, val_loss: None, tokens_per_s: None }).to_line(),
        )
        .unwrap();
        assert!(step.get("tokens_per_s").is_none() && step.get("val_loss").is_none());
    }
}
