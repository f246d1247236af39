//! The plain routes: members, leader, known paths, health, metrics, and
//! the dashboard page.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serversets::{Health, Snapshot};

use super::error::ApiError;
use super::query::SetQuery;
use super::Gateway;

/// The decoded query pairs, or a 400.
pub type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The query pairs of a request.
pub fn pairs(query: Pairs) -> Result<Vec<(String, String)>, ApiError> {
    query
        .map(|Query(pairs)| pairs)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// JSON bytes as a response.
fn json_bytes(body: impl Into<Bytes>) -> Response {
    let body: Bytes = body.into();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The set a request's query names, and its current snapshot.
async fn current(gateway: &Gateway, query: Pairs) -> Result<(SetQuery, Arc<Snapshot>), ApiError> {
    let query = SetQuery::parse(&pairs(query)?)?;
    let snapshot = gateway.watch(&query).await?.current();
    Ok((query, snapshot))
}

/// `GET /v1/members?path=P[&endpoint=..][&shard=..][&meta.K=V]`: the live
/// members, as `serverset watch --once` prints them.
pub async fn members(
    State(gateway): State<Arc<Gateway>>,
    query: Pairs,
) -> Result<Response, ApiError> {
    let (query, snapshot) = current(&gateway, query).await?;
    let version = snapshot.version();
    let cached = gateway
        .lock_rendered()
        .get(&query)
        .filter(|(v, _)| *v == version)
        .map(|(_, body)| body.clone());
    if let Some(body) = cached {
        return Ok(json_bytes(body));
    }
    let body = Bytes::from(
        serde_json::to_vec(snapshot.entries())
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
    );
    let mut rendered = gateway.lock_rendered();
    let newer = rendered.get(&query).is_none_or(|(v, _)| *v < version);
    if newer {
        rendered.insert(query, (version, body.clone()));
    }
    drop(rendered);
    Ok(json_bytes(body))
}

/// `GET /v1/leader?path=P`: the oldest live member; 404 when none.
pub async fn leader(
    State(gateway): State<Arc<Gateway>>,
    query: Pairs,
) -> Result<Response, ApiError> {
    let (query, snapshot) = current(&gateway, query).await?;
    let leader = snapshot
        .leader()
        .ok_or_else(|| ApiError::not_found(format!("{} has no live member", query.path)))?;
    let body = serde_json::to_vec(&**leader)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(json_bytes(body))
}

/// `GET /v1/paths`: the sets the gateway watches or registers in.
pub async fn paths(State(gateway): State<Arc<Gateway>>) -> Json<Vec<String>> {
    let mut paths: BTreeSet<String> = gateway
        .lock_watches()
        .keys()
        .map(|q| q.path.as_str().to_owned())
        .collect();
    paths.extend(gateway.instances.paths().await);
    Json(paths.into_iter().collect())
}

/// `GET /healthz`: 200 while the ZooKeeper session is connected (on etcd:
/// while etcd answers), 503 otherwise.
pub async fn healthz(State(gateway): State<Arc<Gateway>>) -> Response {
    let health = gateway.backend.health();
    let status = if health == Health::Connected {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Json(serde_json::json!({ "session": format!("{health:?}") }));
    (status, body).into_response()
}

/// `GET /metrics`: the library's metrics in Prometheus' text format.
pub async fn metrics(State(gateway): State<Arc<Gateway>>) -> Result<Response, ApiError> {
    let handle = gateway
        .prometheus
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("no metrics recorder"))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response())
}

/// `GET /`: the dashboard.
pub async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

/// Anything else.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route (see the README's gateway API)")
}
