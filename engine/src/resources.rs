//! What a stage asks of a cluster: CPUs, memory, GPUs, time, partition.
//!
//! A stage kind proposes defaults through its [`crate::stage::StageSpec`]
//! (training asks for a GPU when it may use one); the pipeline file's
//! `resources:` on a stage overrides them key by key. Resources never enter
//! a fingerprint: where a stage ran does not change what it computes. Only
//! the Slurm executor reads them; the local executor ignores them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Per-stage resources for cluster executors (Slurm's `sbatch` options).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Tasks (processes) the job runs (`--ntasks`); a stage that runs
    /// several, such as training with `workers`, sets it itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4096))]
    pub tasks: Option<u32>,
    /// CPUs for each of the stage's tasks (`--cpus-per-task`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4096))]
    pub cpus: Option<u32>,
    /// Memory for the job (`--mem`): a number of megabytes, or with a unit
    /// K, M, G or T (`16G`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[KMGT]?$"))]
    pub mem: Option<String>,
    /// GPUs (`--gres=gpu:N`); 0 asks for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 64))]
    pub gpus: Option<u32>,
    /// Time limit (`--time`), in Slurm's forms: `MINUTES`, `MM:SS`,
    /// `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+|[0-9]+:[0-5]?[0-9]|[0-9]+:[0-5]?[0-9]:[0-5]?[0-9]|[0-9]+-[0-9]+(:[0-5]?[0-9]){0,2})$"))]
    pub time: Option<String>,
    /// Partition (`--partition`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.,-]+$"))]
    pub partition: Option<String>,
    /// Account charged (`--account`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.-]+$"))]
    pub account: Option<String>,
    /// Further `sbatch` options, verbatim, one per item (`--qos=high`,
    /// `--constraint=a100`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = r"^--[a-z][a-z0-9-]*(=.*)?$")))]
    pub sbatch: Vec<String>,
}

impl Resources {
    /// `self` with every key that `over` sets taken from `over`; extra
    /// `sbatch` options are appended.
    pub fn overridden_by(&self, over: &Resources) -> Resources {
        Resources {
            tasks: over.tasks.or(self.tasks),
            cpus: over.cpus.or(self.cpus),
            mem: over.mem.clone().or_else(|| self.mem.clone()),
            gpus: over.gpus.or(self.gpus),
            time: over.time.clone().or_else(|| self.time.clone()),
            partition: over.partition.clone().or_else(|| self.partition.clone()),
            account: over.account.clone().or_else(|| self.account.clone()),
            sbatch: self.sbatch.iter().chain(&over.sbatch).cloned().collect(),
        }
    }

    /// The `sbatch` options these resources make.
    pub fn sbatch_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(n) = self.tasks.filter(|n| *n > 1) {
            a.push(format!("--ntasks={n}"));
        }
        if let Some(c) = self.cpus {
            a.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &self.mem {
            a.push(format!("--mem={m}"));
        }
        if let Some(g) = self.gpus.filter(|g| *g > 0) {
            a.push(format!("--gres=gpu:{g}"));
        }
        if let Some(t) = &self.time {
            a.push(format!("--time={t}"));
        }
        if let Some(p) = &self.partition {
            a.push(format!("--partition={p}"));
        }
        if let Some(x) = &self.account {
            a.push(format!("--account={x}"));
        }
        a.extend(self.sbatch.iter().cloned());
        a
    }

    /// One line for `plan`: what a cluster job of this stage asks for.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.tasks.filter(|n| *n > 1) {
            parts.push(format!("{n} tasks"));
        }
        parts.push(format!("{} cpu", self.cpus.unwrap_or(1)));
        if let Some(m) = &self.mem {
            parts.push(format!("mem {m}"));
        }
        if let Some(g) = self.gpus.filter(|g| *g > 0) {
            parts.push(format!("{g} gpu"));
        }
        if let Some(t) = &self.time {
            parts.push(format!("time {t}"));
        }
        if let Some(p) = &self.partition {
            parts.push(format!("partition {p}"));
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipeline_file_overrides_the_kind_defaults_key_by_key() {
        let defaults = Resources { cpus: Some(2), gpus: Some(1), sbatch: vec!["--qos=a".into()], ..Default::default() };
        let user = Resources { gpus: Some(0), time: Some("1:00:00".into()), sbatch: vec!["--constraint=x".into()], ..Default::default() };
        let r = defaults.overridden_by(&user);
        assert_eq!(r.cpus, Some(2));
        assert_eq!(r.gpus, Some(0));
        assert_eq!(r.sbatch_args(), ["--cpus-per-task=2", "--time=1:00:00", "--qos=a", "--constraint=x"]);
    }

    #[test]
    fn tasks_ask_for_one_process_each() {
        let r = Resources { tasks: Some(4), cpus: Some(2), gpus: Some(4), ..Default::default() };
        assert_eq!(r.sbatch_args(), ["--ntasks=4", "--cpus-per-task=2", "--gres=gpu:4"]);
        assert_eq!(r.summary(), "4 tasks, 2 cpu, 4 gpu");
        // One task is Slurm's default and is not spelled out.
        assert_eq!(Resources { tasks: Some(1), ..Default::default() }.sbatch_args(), Vec::<String>::new());
    }
}
