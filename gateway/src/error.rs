//! The gateway's errors: a status and `{"error": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answered to a request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is malformed or invalid.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 503: the store (ZooKeeper, etcd) cannot serve it now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// The status.
    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<serversets::Error> for ApiError {
    fn from(e: serversets::Error) -> Self {
        use serversets::Error;
        match e {
            Error::InvalidPath { .. }
            | Error::InvalidName { .. }
            | Error::InvalidEndpoint { .. }
            | Error::InvalidDestination { .. }
            | Error::InvalidConfig(_) => Self::bad_request(e.to_string()),
            Error::ZooKeeper { ref source, .. } => {
                use zookeeper_client::Error as Zk;
                let status = match source {
                    // Retrying will not help: the path's ACL refuses us,
                    // or the set path is an ephemeral node.
                    Zk::NoAuth | Zk::InvalidAcl => StatusCode::FORBIDDEN,
                    Zk::NoChildrenForEphemerals => StatusCode::CONFLICT,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                };
                Self::new(status, e.to_string())
            }
            // etcd unreachable, or a request of it failing on the way:
            // retrying later may help.
            Error::Etcd { .. } => Self::unavailable(e.to_string()),
            _ => Self::unavailable(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        (self.status, body).into_response()
    }
}
