//! `PUT /v1/instances/{id}?path=P[&format=F]` and `DELETE`: members
//! registered through the gateway's connection (a ZooKeeper session, or an
//! etcd client) for as long as their client renews them within their TTL
//! (Flynn's heartbeats: every 5 s for a 10 s TTL). A renewal with the same
//! data writes nothing to the store; other data (or another format)
//! replaces the member; an expired instance is deleted.
//!
//! On etcd, `format=etcd-naming` stores the member in etcd's naming format
//! (its key is then `P/host:port`), and the member's etcd lease has the
//! default TTL ([`serversets::DEFAULT_TTL`]), kept alive by the gateway:
//! the instance's own `ttl_secs` is the gateway's, enforced by the gateway.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serversets::naming::Format;
use serversets::{Backend, Endpoint, Member, RegisterOptions, Registration, ServerSetPath};
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;
use tracing::{info, warn};

use super::api::{pairs, Pairs};
use super::error::ApiError;
use super::leases::{Leases, Renewal};
use super::query::SetQuery;
use super::Gateway;

/// An instance: its set and its id.
type Key = (String, String);

/// The TTL when the body gives none.
const DEFAULT_TTL_SECS: u64 = 10;

/// How many instances the gateway holds at most (429 beyond).
const MAX_INSTANCES: usize = 10_000;

/// What an instance registers: the member and how it is stored.
type Wanted = (Member, Format);

/// The gateway's registrations and their leases.
pub struct Instances {
    backend: Backend,
    /// How many are held, for `/metrics`.
    gauge: metrics::Gauge,
    held: Mutex<Held>,
    /// Wakes the expiry task when a deadline may have moved earlier.
    changed: Notify,
}

struct Held {
    leases: Leases<Key, Wanted>,
    /// Each registration with the generation of the lease it was made for.
    registrations: HashMap<Key, (u64, Registration)>,
}

impl Instances {
    pub fn new(backend: Backend) -> Self {
        Instances {
            backend,
            gauge: metrics::gauge!(crate::metric_names::INSTANCES),
            held: Mutex::new(Held {
                leases: Leases::new(),
                registrations: HashMap::new(),
            }),
            changed: Notify::new(),
        }
    }

    /// The set paths instances are registered in.
    pub async fn paths(&self) -> Vec<String> {
        let held = self.held.lock().await;
        held.leases.keys().map(|(path, _)| path.clone()).collect()
    }

    /// Deletes every member (the gateway stops).
    pub async fn close_all(&self) {
        let registrations: Vec<Registration> = {
            let mut held = self.held.lock().await;
            held.leases = Leases::new();
            self.gauge.set(0.0);
            held.registrations.drain().map(|(_, (_, r))| r).collect()
        };
        futures::future::join_all(registrations.into_iter().map(Registration::close)).await;
    }
}

/// The body of a PUT.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    host: String,
    port: i64,
    #[serde(default)]
    additional: BTreeMap<String, EndpointBody>,
    #[serde(default)]
    shard: Option<i32>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointBody {
    host: String,
    port: i64,
}

/// A checked endpoint.
fn endpoint(what: &str, host: &str, port: i64) -> Result<Endpoint, ApiError> {
    if host.trim().is_empty() {
        return Err(ApiError::bad_request(format!(
            "{what}: host must not be empty"
        )));
    }
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ApiError::bad_request(format!("{what}: port {port} is outside 1-65535")))?;
    format!("{host}:{port}")
        .parse::<Endpoint>()
        .or_else(|_| {
            // An IPv6 address without brackets.
            format!("[{host}]:{port}").parse::<Endpoint>()
        })
        .map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
}

/// A checked instance id: 1 to 128 of `A-Z a-z 0-9 . _ - :`.
fn check_id(id: &str) -> Result<(), ApiError> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if id.is_empty() || id.len() > 128 || !id.chars().all(fine) {
        return Err(ApiError::bad_request(format!(
            "instance id {id:?}: 1 to 128 of A-Z a-z 0-9 . _ - :"
        )));
    }
    Ok(())
}

/// The member and TTL a body describes.
fn member_of(body: &[u8]) -> Result<(Member, Duration), ApiError> {
    let body: Body =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
    let mut member = Member::new(endpoint("host/port", &body.host, body.port)?);
    for (name, e) in &body.additional {
        if name.is_empty() {
            return Err(ApiError::bad_request(
                "additional: an endpoint name is empty",
            ));
        }
        member = member.with_additional(
            name,
            endpoint(&format!("additional.{name}"), &e.host, e.port)?,
        );
    }
    if let Some(shard) = body.shard {
        member = member.with_shard(shard);
    }
    for (key, value) in body.metadata {
        if key.is_empty() {
            return Err(ApiError::bad_request("metadata: a key is empty"));
        }
        member = member.with_metadata(key, value);
    }
    let ttl = body.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
    if !(1..=3600).contains(&ttl) {
        return Err(ApiError::bad_request(format!(
            "ttl_secs {ttl} is outside 1-3600"
        )));
    }
    Ok((member, Duration::from_secs(ttl)))
}

/// Writes need `Authorization: Bearer TOKEN` when the gateway has one.
fn authorize(gateway: &Gateway, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &gateway.token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // The same time whatever matches: no hint through timing.
    let same = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "writes need Authorization: Bearer <token>",
        ))
    }
}

/// The set and format of an instances route, checked against the store.
fn set_path(gateway: &Gateway, query: Pairs) -> Result<(ServerSetPath, Format), ApiError> {
    let (path, format) = SetQuery::path_only(&pairs(query)?)?;
    gateway.check_format(format)?;
    Ok((path, format))
}

/// `PUT /v1/instances/{id}?path=P[&format=F]`.
pub async fn put(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Pairs,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&gateway, &headers)?;
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    check_id(&id)?;
    let (path, format) = set_path(&gateway, query)?;
    let (member, ttl) = member_of(&body)?;
    let instances = &gateway.instances;
    let key = (path.as_str().to_owned(), id.clone());
    let (renewal, generation) = {
        let mut held = instances.held.lock().await;
        if held.leases.generation(&key).is_none() && held.leases.len() >= MAX_INSTANCES {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("the gateway holds {MAX_INSTANCES} instances already"),
            ));
        }
        let renewal = held
            .leases
            .renew(key.clone(), (member.clone(), format), ttl, Instant::now());
        instances.gauge.set(held.leases.len() as f64);
        let generation = held.leases.generation(&key).unwrap_or_default();
        if renewal == Renewal::Renewed {
            // `None` while its registration is still being made.
            let znode = held
                .registrations
                .get(&key)
                .filter(|(made_for, _)| *made_for == generation)
                .and_then(|(_, registration)| registration.znode());
            return Ok(answer(StatusCode::OK, &id, &path, znode, ttl, true));
        }
        (renewal, generation)
    };
    // A new deadline may be the earliest.
    instances.changed.notify_one();
    // In a task of its own: a client that hangs up mid-request cannot
    // leave its lease without a registration.
    let settling = tokio::spawn(register(
        Arc::clone(&gateway),
        key,
        generation,
        path.clone(),
        (member, format),
    ));
    let znode = settling
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    info!(%path, %id, ?renewal, "gateway instance registered");
    let status = if renewal == Renewal::New {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(answer(status, &id, &path, znode, ttl, false))
}

/// Registers `member` for the lease `key` of this `generation`, and keeps
/// the registration if the lease still is that one; otherwise (renewed
/// with other data, deleted or expired meanwhile) deletes it again. On
/// failure, gives the lease up if it is still this one, so that the
/// client's next PUT starts afresh.
async fn register(
    gateway: Arc<Gateway>,
    key: Key,
    generation: u64,
    path: ServerSetPath,
    (member, format): Wanted,
) -> Result<Option<String>, ApiError> {
    let instances = &gateway.instances;
    // On etcd, the default lease TTL: the gateway keeps the lease alive,
    // and deletes the member itself when the instance's TTL runs out.
    let options = RegisterOptions::new().format(format);
    match instances
        .backend
        .register_with(&path, member, options)
        .await
    {
        Ok(registration) => {
            let znode = registration.znode();
            let (unwanted, current) = {
                let mut held = instances.held.lock().await;
                if held.leases.generation(&key) == Some(generation) {
                    let old = held
                        .registrations
                        .insert(key.clone(), (generation, registration));
                    (old.map(|(_, old)| old), true)
                } else {
                    (Some(registration), false)
                }
            };
            if let Some(unwanted) = unwanted {
                unwanted.close().await;
            }
            if current {
                Ok(znode)
            } else {
                Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "instance {} was replaced or deleted while it registered",
                        key.1
                    ),
                ))
            }
        }
        Err(e) => {
            let old = {
                let mut held = instances.held.lock().await;
                if held.leases.generation(&key) == Some(generation) {
                    held.leases.release(&key);
                    instances.gauge.set(held.leases.len() as f64);
                    held.registrations.remove(&key)
                } else {
                    None
                }
            };
            if let Some((_, old)) = old {
                old.close().await;
            }
            Err(e.into())
        }
    }
}

fn answer(
    status: StatusCode,
    id: &str,
    path: &ServerSetPath,
    znode: Option<String>,
    ttl: Duration,
    renewed: bool,
) -> Response {
    let body = serde_json::json!({
        "id": id,
        "path": path.as_str(),
        "znode": znode,
        "ttl_secs": ttl.as_secs(),
        "renewed": renewed,
    });
    (status, Json(body)).into_response()
}

/// `DELETE /v1/instances/{id}?path=P[&format=F]`: removes it at once
/// (whatever format it was registered in; `format` is only checked).
pub async fn delete(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Pairs,
) -> Result<Response, ApiError> {
    authorize(&gateway, &headers)?;
    check_id(&id)?;
    let (path, _) = set_path(&gateway, query)?;
    let key = (path.as_str().to_owned(), id.clone());
    let (held_lease, registration) = {
        let mut held = gateway.instances.held.lock().await;
        let released = held.leases.release(&key);
        gateway.instances.gauge.set(held.leases.len() as f64);
        (released, held.registrations.remove(&key))
    };
    if let Some((_, registration)) = registration {
        registration.close().await;
    }
    if held_lease {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("no instance {id} in {path}")))
    }
}

/// Deletes instances whose TTL ran out, for as long as the gateway runs.
pub async fn expire_forever(gateway: Arc<Gateway>) {
    let instances = &gateway.instances;
    loop {
        let next = instances.held.lock().await.leases.next_deadline();
        tokio::select! {
            _ = instances.changed.notified() => continue,
            _ = async {
                match next {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        let expired: Vec<(Key, Option<(u64, Registration)>)> = {
            let mut held = instances.held.lock().await;
            let keys = held.leases.expire(Instant::now());
            instances.gauge.set(held.leases.len() as f64);
            keys.into_iter()
                .map(|key| {
                    let registration = held.registrations.remove(&key);
                    (key, registration)
                })
                .collect()
        };
        for ((path, id), registration) in expired {
            warn!(%path, %id, "gateway instance expired: not renewed within its TTL");
            if let Some((_, registration)) = registration {
                tokio::spawn(registration.close());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked() {
        let (member, ttl) = member_of(
            br#"{"host":"10.0.0.1","port":8080,"additional":{"http":{"host":"10.0.0.1","port":80}},"shard":2,"metadata":{"zone":"eu"},"ttl_secs":30}"#,
        )
        .unwrap();
        assert_eq!(member.service_endpoint.port, 8080);
        assert_eq!(member.additional("http").map(|e| e.port), Some(80));
        assert_eq!(ttl, Duration::from_secs(30));
        for bad in [
            &br#"{"host":"h","port":0}"#[..],
            br#"{"host":"h","port":65536}"#,
            br#"{"host":"","port":1}"#,
            br#"{"host":"h","port":1,"ttl_secs":0}"#,
            br#"{"host":"h","port":1,"ttl_secs":3601}"#,
            br#"{"host":"h","port":1,"colour":"red"}"#,
            br#"{"host":"h","port":1"#,
            br#"{"host":"h","port":1,"additional":{"":{"host":"h","port":1}}}"#,
        ] {
            let e = member_of(bad).expect_err(&String::from_utf8_lossy(bad));
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        }
        assert!(check_id("web-1.eu:8080").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id("a/b").is_err());
    }
}
