//! What the examples share: where ZooKeeper is.
#![allow(dead_code)]

use std::time::Duration;

use serversets::Client;

/// The ZooKeeper the example uses: the first argument, else `$ZK`, else a
/// throwaway local server started (and stopped on drop) just for this run.
pub struct ZooKeeper {
    pub connect: String,
    _local: Option<testkit::ZooKeeper>,
}

impl ZooKeeper {
    pub async fn from_args() -> Result<ZooKeeper, Box<dyn std::error::Error + Send + Sync>> {
        if let Some(connect) = std::env::args().nth(1).or_else(|| std::env::var("ZK").ok()) {
            return Ok(ZooKeeper {
                connect,
                _local: None,
            });
        }
        println!("(no ZooKeeper given as argument or $ZK: starting a throwaway local one)");
        let local = tokio::task::spawn_blocking(testkit::ZooKeeper::start).await??;
        Ok(ZooKeeper {
            connect: local.connect_string(),
            _local: Some(local),
        })
    }

    pub async fn client(&self) -> Result<Client, serversets::Error> {
        Client::builder(&self.connect)
            .session_timeout(Duration::from_secs(10))
            .connect()
            .await
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `warn`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
