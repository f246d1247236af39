//! One memcache command over one connection, in the meta protocol, and
//! what its reply means.
//!
//! Replies are matched to requests twice over: a connection carries one
//! request at a time and is closed by `async-memcached` whenever a request
//! does not complete (error, timeout, cancellation), so a late reply can
//! never be read as the next request's; and gets ask the server to echo the
//! key (`k` flag), which is compared with the key asked for.

use async_memcached::{Client, MetaProtocol, Status};

/// How a store command treats an existing or missing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Store whatever is there.
    Set,
    /// Store only if absent.
    Add,
    /// Store only if present.
    Replace,
}

/// What to send.
#[derive(Debug)]
pub(crate) enum Command<'a> {
    Get(&'a str),
    Gets(&'a str),
    GetMulti(&'a [&'a str]),
    Store {
        key: &'a str,
        value: &'a [u8],
        ttl: u32,
        mode: Mode,
    },
    Cas {
        key: &'a str,
        value: &'a [u8],
        ttl: u32,
        token: u64,
    },
    Delete(&'a str),
    Arithmetic {
        key: &'a str,
        amount: u64,
        up: bool,
    },
    Touch {
        key: &'a str,
        ttl: u32,
    },
}

/// The outcome of a compare-and-swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CasOutcome {
    /// The value was stored.
    Stored,
    /// The item changed since its token was read: nothing stored.
    Changed,
    /// The item is gone: nothing stored.
    NotFound,
}

/// What the server answered.
#[derive(Debug)]
pub(crate) enum Reply {
    Value(Option<Vec<u8>>),
    ValueWithToken(Option<(Vec<u8>, u64)>),
    Values(Vec<(String, Vec<u8>)>),
    Done(bool),
    Cas(CasOutcome),
    Counter(Option<u64>),
}

/// Why a command failed.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The client's error: I/O, a closed connection, a server error line.
    Memcache(async_memcached::Error),
    /// A reply for another key.
    Mismatch { expected: String, got: String },
    /// A reply that does not parse.
    Unexpected(String),
}

/// What a failed command says about its server, for failure accrual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Unreachable or broken: I/O errors, replies that do not parse or
    /// name another key. Counts toward marking it dead.
    Failure,
    /// It answered, with an error line (`SERVER_ERROR`, `CLIENT_ERROR`,
    /// `ERROR`): says nothing either way.
    Neutral,
}

impl Fault {
    /// What this fault says about the server.
    pub(crate) fn verdict(&self) -> Verdict {
        use async_memcached::{Error, ErrorKind};
        match self {
            Fault::Memcache(Error::Protocol(Status::Error(
                ErrorKind::Client(_)
                | ErrorKind::Server(_)
                | ErrorKind::NonexistentCommand
                | ErrorKind::KeyTooLong
                | ErrorKind::OpaqueTooLong,
            ))) => Verdict::Neutral,
            _ => Verdict::Failure,
        }
    }

    /// Whether the connection may be in an unknown state and must be
    /// closed by the caller (the client closes it itself on I/O and parse
    /// errors).
    pub(crate) fn poisons_connection(&self) -> bool {
        matches!(self, Fault::Mismatch { .. } | Fault::Unexpected(_))
    }

    /// Whether the connection's other idle siblings are likely dead too
    /// (the server went away).
    pub(crate) fn is_io(&self) -> bool {
        matches!(
            self,
            Fault::Memcache(
                async_memcached::Error::Io(_)
                    | async_memcached::Error::Connect(_)
                    | async_memcached::Error::ConnectionClosed
            )
        )
    }
}

impl From<async_memcached::Error> for Fault {
    fn from(e: async_memcached::Error) -> Self {
        Fault::Memcache(e)
    }
}

/// A status that is an answer, not an error.
fn status(
    result: Result<Option<async_memcached::MetaValue>, async_memcached::Error>,
) -> Result<Result<(), Status>, Fault> {
    match result {
        Ok(_) => Ok(Ok(())),
        Err(async_memcached::Error::Protocol(
            s @ (Status::NotFound | Status::NotStored | Status::Exists),
        )) => Ok(Err(s)),
        Err(e) => Err(Fault::Memcache(e)),
    }
}

fn ttl_flag(ttl: u32) -> String {
    format!("T{ttl}")
}

/// Checks that a reply is for `key`.
fn check_echo(key: &str, echoed: Option<&[u8]>) -> Result<(), Fault> {
    match echoed {
        Some(got) if got == key.as_bytes() => Ok(()),
        other => Err(Fault::Mismatch {
            expected: key.to_owned(),
            got: other.map_or_else(
                || "(no key)".to_owned(),
                |k| String::from_utf8_lossy(k).into_owned(),
            ),
        }),
    }
}

/// Sends `command` on `conn` and reads its reply.
pub(crate) async fn run(conn: &mut Client, command: &Command<'_>) -> Result<Reply, Fault> {
    match *command {
        Command::Get(key) => {
            let found = conn.meta_get(key, false, None, Some(&["v", "k"])).await?;
            match found {
                None => Ok(Reply::Value(None)),
                Some(item) => {
                    check_echo(key, item.key.as_deref())?;
                    // A miss with the key echoed is `EN k<key>`.
                    if item.status == Some(Status::NotFound) {
                        return Ok(Reply::Value(None));
                    }
                    Ok(Reply::Value(Some(item.data.unwrap_or_default())))
                }
            }
        }
        Command::Gets(key) => {
            let found = conn
                .meta_get(key, false, None, Some(&["v", "k", "c"]))
                .await?;
            match found {
                None => Ok(Reply::ValueWithToken(None)),
                Some(item) => {
                    check_echo(key, item.key.as_deref())?;
                    if item.status == Some(Status::NotFound) {
                        return Ok(Reply::ValueWithToken(None));
                    }
                    let token = item
                        .cas
                        .ok_or_else(|| Fault::Unexpected("no CAS token in the reply".to_owned()))?;
                    Ok(Reply::ValueWithToken(Some((
                        item.data.unwrap_or_default(),
                        token,
                    ))))
                }
            }
        }
        Command::GetMulti(keys) => {
            let items = conn.meta_get_multi(keys, Some(&["v"])).await?;
            let mut found = Vec::with_capacity(items.len());
            for item in items {
                let key = item.key.unwrap_or_default();
                let Some(asked) = keys.iter().find(|k| k.as_bytes() == key.as_slice()) else {
                    return Err(Fault::Mismatch {
                        expected: keys.join(" "),
                        got: String::from_utf8_lossy(&key).into_owned(),
                    });
                };
                found.push(((*asked).to_owned(), item.data.unwrap_or_default()));
            }
            Ok(Reply::Values(found))
        }
        Command::Store {
            key,
            value,
            ttl,
            mode,
        } => {
            let ttl = ttl_flag(ttl);
            let flags: &[&str] = match mode {
                Mode::Set => &[&ttl],
                Mode::Add => &[&ttl, "ME"],
                Mode::Replace => &[&ttl, "MR"],
            };
            let stored = status(conn.meta_set(key, value, false, None, Some(flags)).await)?;
            Ok(Reply::Done(stored.is_ok()))
        }
        Command::Cas {
            key,
            value,
            ttl,
            token,
        } => {
            let flags = [ttl_flag(ttl), format!("C{token}")];
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            let outcome = match status(conn.meta_set(key, value, false, None, Some(&flags)).await)?
            {
                Ok(()) => CasOutcome::Stored,
                Err(Status::Exists) => CasOutcome::Changed,
                Err(_) => CasOutcome::NotFound,
            };
            Ok(Reply::Cas(outcome))
        }
        Command::Delete(key) => {
            let deleted = status(conn.meta_delete(key, false, None, None).await)?;
            Ok(Reply::Done(deleted.is_ok()))
        }
        Command::Arithmetic { key, amount, up } => {
            let result = if up {
                conn.meta_increment(key, false, None, Some(amount), Some(&["v"]))
                    .await
            } else {
                conn.meta_decrement(key, false, None, Some(amount), Some(&["v"]))
                    .await
            };
            match result {
                Ok(Some(item)) => {
                    let data = item.data.unwrap_or_default();
                    let text = std::str::from_utf8(&data).unwrap_or("");
                    text.trim()
                        .parse()
                        .map(|n| Reply::Counter(Some(n)))
                        .map_err(|_| {
                            Fault::Unexpected(format!(
                                "counter value {:?} is not a number",
                                String::from_utf8_lossy(&data)
                            ))
                        })
                }
                Ok(None) => Err(Fault::Unexpected(
                    "no counter value in the reply".to_owned(),
                )),
                Err(async_memcached::Error::Protocol(Status::NotFound)) => Ok(Reply::Counter(None)),
                Err(e) => Err(Fault::Memcache(e)),
            }
        }
        Command::Touch { key, ttl } => {
            let ttl = ttl_flag(ttl);
            // `HD k<key>` when touched, `EN k<key>` when absent.
            let found = conn.meta_get(key, false, None, Some(&[&ttl, "k"])).await?;
            match found {
                None => Ok(Reply::Done(false)),
                Some(item) => {
                    check_echo(key, item.key.as_deref())?;
                    Ok(Reply::Done(item.status != Some(Status::NotFound)))
                }
            }
        }
    }
}
