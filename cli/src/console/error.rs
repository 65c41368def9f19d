/// A failure as the console answers it: an HTTP status and `{ "error": "..." }`.
///
/// An agent's or collector's own refusal keeps its words and maps to the status
/// that means the same (`PERMISSION_DENIED` is 403); anything else (cannot reach
/// it, lost the connection) is a 502 with the CLI's one-line message.
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tonic::Code;

use crate::client::RpcError;

pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The message shown in the page.
    pub message: String,
}

impl ApiError {
    /// An error of the console itself (a bad request, a refused origin).
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> ApiError {
        match err.chain().find_map(|e| e.downcast_ref::<RpcError>()) {
            Some(rpc) => ApiError { status: http_status(rpc.code), message: rpc.message.clone() },
            None => {
                let text = format!("{err:#}");
                let first = text.split("\n\n").next().unwrap_or(&text).to_owned();
                ApiError { status: StatusCode::BAD_GATEWAY, message: first }
            }
        }
    }
}

/// The HTTP status meaning what a gRPC code means.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::PermissionDenied | Code::Unauthenticated => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_403_with_their_own_words() {
        let e = RpcError::error(Code::PermissionDenied, "kill needs role responder".into(), Some("a hint"));
        let a = ApiError::from(e);
        assert_eq!((a.status, a.message.as_str()), (StatusCode::FORBIDDEN, "kill needs role responder"));
        let a = ApiError::from(anyhow::anyhow!("cannot reach the agent at /x: gone\n\nIs it running?"));
        assert_eq!((a.status, a.message.as_str()), (StatusCode::BAD_GATEWAY, "cannot reach the agent at /x: gone"));
    }
}
