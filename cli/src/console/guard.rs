/// The console's own gate, in front of every route.
///
/// A page in another tab can make the browser send requests to 127.0.0.1, and a
/// DNS name rebound to 127.0.0.1 can even read the answers. So: a request whose
/// `Host` is not this console's address is refused (no rebinding); a state-changing
/// request must be a POST with a JSON body whose `Origin` is this console (no
/// cross-site kill; JSON also forces a CORS preflight that nothing here answers).
/// Every answer forbids framing and loading anything from elsewhere.
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

pub struct Guard {
    /// The `Host` values this console answers to: its address, and
    /// `localhost:PORT` when that address is loopback.
    hosts: Vec<String>,
}

impl Guard {
    pub fn new(bound: SocketAddr) -> Guard {
        let mut hosts = vec![bound.to_string()];
        if bound.ip().is_loopback() {
            hosts.push(format!("localhost:{}", bound.port()));
        }
        Guard { hosts }
    }

    /// `Ok` when the request may go on; else the refusal.
    fn admit(&self, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !self.hosts.iter().any(|h| h == host) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("refused: Host {host:?} is not this console's address ({})", self.hosts[0]),
            ));
        }
        if method == Method::GET || method == Method::HEAD {
            return Ok(());
        }
        if method != Method::POST {
            return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("refused: {method} is not used here")));
        }
        let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
        match origin {
            Some(o) if self.hosts.iter().any(|h| o == format!("http://{h}")) => {}
            Some(o) => {
                return Err(ApiError::new(StatusCode::FORBIDDEN, format!("refused: a request from origin {o:?}")));
            }
            None => return Err(ApiError::new(StatusCode::FORBIDDEN, "refused: a state-changing request without Origin")),
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|c| c.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
        if !json {
            return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "refused: state-changing requests are JSON"));
        }
        Ok(())
    }
}

/// The middleware: refuses what [`Guard::admit`] refuses, and adds the headers
/// that keep the page to itself.
pub async fn check(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let mut resp = match guard.admit(req.method(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn foreign_hosts_are_refused() {
        let g = Guard::new("127.0.0.1:7480".parse().unwrap());
        assert!(g.admit(&Method::GET, &headers(&[(header::HOST, "127.0.0.1:7480")])).is_ok());
        assert!(g.admit(&Method::GET, &headers(&[(header::HOST, "localhost:7480")])).is_ok());
        let e = g.admit(&Method::GET, &headers(&[(header::HOST, "evil.example:7480")])).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(g.admit(&Method::GET, &HeaderMap::new()).is_err(), "no Host at all");
    }

    #[test]
    fn posts_need_our_origin_and_json() {
        let g = Guard::new("127.0.0.1:7480".parse().unwrap());
        let host = (header::HOST, "127.0.0.1:7480");
        let json = (header::CONTENT_TYPE, "application/json");
        let ok = headers(&[host.clone(), json.clone(), (header::ORIGIN, "http://127.0.0.1:7480")]);
        assert!(g.admit(&Method::POST, &ok).is_ok());
        let other = headers(&[host.clone(), json.clone(), (header::ORIGIN, "http://evil.example")]);
        assert_eq!(g.admit(&Method::POST, &other).unwrap_err().status, StatusCode::FORBIDDEN);
        let none = headers(&[host.clone(), json.clone()]);
        assert_eq!(g.admit(&Method::POST, &none).unwrap_err().status, StatusCode::FORBIDDEN);
        let form = headers(&[host.clone(), (header::CONTENT_TYPE, "text/plain"), (header::ORIGIN, "http://127.0.0.1:7480")]);
        assert_eq!(g.admit(&Method::POST, &form).unwrap_err().status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(g.admit(&Method::DELETE, &ok).unwrap_err().status, StatusCode::METHOD_NOT_ALLOWED);
    }
}
