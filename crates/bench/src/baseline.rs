//! The baseline: the least a server on this machine can do per request.
//!
//! A plain hyper HTTP/1.1 server on tokio's multi-threaded runtime with its
//! default worker count — the runtime `presenced` runs on — that reads each
//! request whole and answers with a fixed body of the size `presenced` gives
//! that kind of request, doing no other work. Every scenario runs against it
//! with the same load generator and connections, in the same run, so each
//! figure of `presenced` is a ratio to what this machine and this generator
//! can carry at all; the baseline's own rate also shows the generator is not
//! what limits the figures.
//!
//! It runs as its own process (`presenced-bench baseline`), like presenced.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// The body sizes to answer with, by kind of request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// `GET …/presence`.
    pub get: usize,
    /// `POST …/getPresencesByUserId`.
    pub bulk: usize,
    /// Every other request (the actions).
    pub action: usize,
}

impl Sizes {
    /// As command-line arguments of `presenced-bench baseline`.
    pub fn to_args(self) -> Vec<String> {
        vec![
            "--get".into(),
            self.get.to_string(),
            "--bulk".into(),
            self.bulk.to_string(),
            "--action".into(),
            self.action.to_string(),
        ]
    }

    pub fn from_args(args: &[String]) -> Option<Sizes> {
        let mut sizes = Sizes {
            get: 0,
            bulk: 0,
            action: 0,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value = args.next()?.parse().ok()?;
            match flag.as_str() {
                "--get" => sizes.get = value,
                "--bulk" => sizes.bulk = value,
                "--action" => sizes.action = value,
                _ => return None,
            }
        }
        Some(sizes)
    }
}

/// A JSON body of exactly `size` bytes (empty for 0).
fn body_of(size: usize) -> Bytes {
    if size < 8 {
        return Bytes::from(vec![b' '; size]);
    }
    let mut body = b"{\"v\":\"".to_vec();
    body.resize(size - 2, b'x');
    body.extend_from_slice(b"\"}");
    Bytes::from(body)
}

/// Serves until the process is killed; prints `baseline listening on
/// http://ADDR` once it accepts connections.
pub fn serve(sizes: Sizes) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener =
                tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
            println!("baseline listening on http://{}", listener.local_addr()?);
            let bodies = [
                body_of(sizes.get),
                body_of(sizes.bulk),
                body_of(sizes.action),
            ];
            loop {
                let (stream, _) = listener.accept().await?;
                stream.set_nodelay(true)?;
                let bodies = bodies.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let bodies = bodies.clone();
                        async move { Ok::<_, Infallible>(answer(request, &bodies).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        })
}

async fn answer(request: Request<Incoming>, bodies: &[Bytes; 3]) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let body = if path.ends_with("/presence") {
        &bodies[0]
    } else if path.ends_with("getPresencesByUserId") {
        &bodies[1]
    } else {
        &bodies[2]
    };
    let body = body.clone();
    // Read the request whole, as any real server must.
    let _ = request.into_body().collect().await;
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(body))
        .expect("a fixed response is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_asked_size() {
        for size in [0, 1, 7, 8, 9, 300, 250_000] {
            assert_eq!(body_of(size).len(), size);
        }
        let sizes = Sizes {
            get: 1,
            bulk: 2,
            action: 3,
        };
        assert_eq!(Sizes::from_args(&sizes.to_args()), Some(sizes));
        assert_eq!(Sizes::from_args(&["--get".into()]), None);
    }
}
