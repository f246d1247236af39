//! What the measurements share: result rows, statistics, output, and
//! writing members with the raw ZooKeeper client.

use std::path::Path;
use std::time::Duration;

use futures::future::join_all;
use serversets::{codec, Endpoint, Member};
use zookeeper_client as zk;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One line of the result table (and one object of the JSON).
#[derive(Debug, Clone)]
pub struct Row {
    pub measurement: String,
    /// The figure as shown.
    pub figure: String,
    /// The figure as a number, in `unit`.
    pub value: f64,
    pub unit: &'static str,
    /// The reference measured in the same run, as shown.
    pub reference: String,
    /// The reference as a number, in `unit`, when there is one.
    pub reference_value: Option<f64>,
    /// figure / reference, when that is meaningful.
    pub ratio: Option<f64>,
    /// The target, as shown (`-`: reported, no target).
    pub target: String,
    /// Whether the target is met (`None`: no target).
    pub met: Option<bool>,
}

impl Row {
    /// A row without a target.
    pub fn info(measurement: impl Into<String>, value: f64, unit: &'static str) -> Row {
        Row {
            measurement: measurement.into(),
            figure: show(value, unit),
            value,
            unit,
            reference: "-".into(),
            reference_value: None,
            ratio: None,
            target: "-".into(),
            met: None,
        }
    }

    /// Sets the reference (same unit as the figure) and the ratio to it.
    pub fn against(mut self, label: &str, reference: f64) -> Row {
        self.reference = format!("{label} {}", show(reference, self.unit));
        self.reference_value = Some(reference);
        self.ratio = (reference > 0.0).then(|| self.value / reference);
        self
    }

    /// Sets a reference given as text only.
    pub fn reference_text(mut self, text: impl Into<String>) -> Row {
        self.reference = text.into();
        self
    }

    /// Sets the target and whether it is met.
    pub fn target(mut self, target: impl Into<String>, met: bool) -> Row {
        self.target = target.into();
        self.met = Some(met);
        self
    }

    /// Shows the figure differently (the value stays).
    pub fn figure_text(mut self, text: impl Into<String>) -> Row {
        self.figure = text.into();
        self
    }
}

/// A value with its unit, for people.
pub fn show(value: f64, unit: &str) -> String {
    match unit {
        "ms" => format!("{value:.2} ms"),
        "µs" => format!("{value:.1} µs"),
        "ns" => format!("{value:.0} ns"),
        "MB" => format!("{value:.1} MB"),
        "s" => format!("{value:.2} s"),
        "B" => format!("{value:.0} B"),
        "%" => format!("{value:+.1} %"),
        "req/s" => format!("{value:.0} req/s"),
        "" => format!("{value}"),
        other => format!("{value} {other}"),
    }
}

/// The markdown table of the rows.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| measurement | figure | reference (same run) | ratio | target | met |\n\
         | --- | ---: | --- | ---: | --- | :---: |\n",
    );
    for row in rows {
        let ratio = row.ratio.map_or("-".into(), |r| format!("{r:.2}x"));
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            row.measurement, row.figure, row.reference, ratio, row.target, met
        ));
    }
    out
}

/// Writes the rows as JSON.
pub fn write_json(
    path: &Path,
    machine: &str,
    zookeeper: Option<&str>,
    quick: bool,
    rows: &[Row],
) -> Result<(), BoxError> {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "measurement": r.measurement,
                "figure": r.figure,
                "value": r.value,
                "unit": r.unit,
                "reference": r.reference,
                "reference_value": r.reference_value,
                "ratio": r.ratio,
                "target": r.target,
                "met": r.met,
            })
        })
        .collect();
    let document = serde_json::json!({
        "machine": machine,
        "zookeeper": zookeeper,
        "quick": quick,
        "rows": rows,
    });
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&document)?;
    std::fs::write(path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// Cores and CPU model.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {cpu}")
}

/// The `p`-quantile (0..=1) of some durations, nearest rank.
pub fn percentile(times: &[Duration], p: f64) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The p50 of some durations, in milliseconds.
pub fn p50(times: &[Duration]) -> f64 {
    ms(percentile(times, 0.5))
}

/// The p99 of some durations, in milliseconds.
pub fn p99(times: &[Duration]) -> f64 {
    ms(percentile(times, 0.99))
}

/// The median of some numbers.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A raw `zookeeper-client` session.
pub async fn raw_client(connect: &str) -> Result<zk::Client, BoxError> {
    zk::Client::connect(connect)
        .await
        .map_err(|e| format!("connecting to ZooKeeper at {connect}: {e}").into())
}

/// Creates `dir` and its parents (persistent, open ACL).
pub async fn mkdir(writer: &zk::Client, dir: &str) -> Result<(), BoxError> {
    let acl = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    match writer.mkdir(dir, &acl).await {
        Ok(()) | Err(zk::Error::NodeExists) => Ok(()),
        Err(e) => Err(format!("creating {dir}: {e}").into()),
    }
}

/// Member `i`'s data, as a Finagle server writes it.
pub fn member_data(i: usize) -> Vec<u8> {
    codec::encode(&Member::new(Endpoint::new(
        format!("10.0.{}.{}", (i / 256) % 256, i % 256),
        (i % 60_000) as u16 + 1024,
    )))
}

/// Creates one ephemeral sequential member; returns its znode name.
pub async fn create(writer: &zk::Client, dir: &str, data: &[u8]) -> Result<String, BoxError> {
    let prefix = format!("{dir}/member_");
    let mode = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let (_, seq) = writer
        .create(&prefix, data, &mode)
        .await
        .map_err(|e| format!("creating a member in {dir}: {e}"))?;
    Ok(format!("member_{seq}"))
}

/// Creates `size` members, 1000 requests in flight at a time.
pub async fn populate(writer: &zk::Client, dir: &str, size: usize) -> Result<(), BoxError> {
    mkdir(writer, dir).await?;
    let data: Vec<Vec<u8>> = (0..size).map(member_data).collect();
    for chunk in data.chunks(1000) {
        for result in join_all(chunk.iter().map(|d| create(writer, dir, d))).await {
            result?;
        }
    }
    Ok(())
}

/// Creates `size` members like [`populate`], with multi-op requests of
/// [`MULTI_CREATES`] creates each, a few requests in flight at a time: for
/// sets of 100,000.
pub async fn populate_multi(writer: &zk::Client, dir: &str, size: usize) -> Result<(), BoxError> {
    /// Multi requests in flight at once.
    const IN_FLIGHT: usize = 4;
    mkdir(writer, dir).await?;
    let prefix = format!("{dir}/member_");
    let mode = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let indices: Vec<usize> = (0..size).collect();
    for group in indices.chunks(MULTI_CREATES * IN_FLIGHT) {
        let mut commits = Vec::new();
        for chunk in group.chunks(MULTI_CREATES) {
            let mut multi = writer.new_multi_writer();
            for &i in chunk {
                multi
                    .add_create(&prefix, &member_data(i), &mode)
                    .map_err(|e| format!("preparing a create in {dir}: {e}"))?;
            }
            commits.push(multi.commit());
        }
        for result in join_all(commits).await {
            result.map_err(|e| format!("creating members in {dir}: {e}"))?;
        }
    }
    Ok(())
}

/// How many creates one request of [`populate_multi`] carries.
pub const MULTI_CREATES: usize = 1000;
