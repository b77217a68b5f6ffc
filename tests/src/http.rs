//! One tiny HTTP/1.1 client for the harness's own calls to the local servers (moto's and the
//! Compute fake's control endpoints, fake-gcs-server's JSON API behind flotilla's back).
//!
//! It exists so that those calls need no HTTP client crate and work from synchronous helpers
//! called inside `#[tokio::test]` (where a blocking client would panic): plain-text requests on
//! 127.0.0.1, one connection each, read up to `Content-Length` (or to the end when a server
//! sends none), since some servers keep HTTP/1.1 connections open despite `Connection: close`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long one answer may take before the request fails.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends one request to `host` (`127.0.0.1:PORT`) and returns the status and body. `headers`
/// come before `Content-Length`, which is always sent; `Err` says what failed (connect, send,
/// read, or an answer that is not HTTP).
pub fn request(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(host).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;

    let mut response = Vec::new();
    let mut buf = [0_u8; 8192];
    let (head_len, length) = loop {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break (response.len(), None);
        }
        response.extend_from_slice(&buf[..n]);
        if let Some(pos) = find(&response, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&response[..pos]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            break (pos + 4, length);
        }
    };
    // Without a length (or with `Connection: close` honoured) the body ends with the stream.
    while length.is_none_or(|length| response.len() < head_len + length) {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
    }
    let head_len = head_len.min(response.len());
    let head = String::from_utf8_lossy(&response[..head_len]);
    let body = String::from_utf8_lossy(&response[head_len..]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {head}"))?;
    Ok((status, body))
}

/// [`request`] with a JSON body (or none), as the harnesses' control endpoints take it.
pub fn json(
    host: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let headers = [("Content-Type", "application/json")];
    request(host, method, path, &headers, body.unwrap_or(""))
}

/// Percent-encodes `s` as one path segment or query value (everything but RFC 3986's
/// unreserved characters, so `/` in an object name stays inside its segment).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves one canned answer on a fresh port and returns the port.
    fn serve(answer: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0_u8; 4096];
            let _ = stream.read(&mut buf);
            stream.write_all(answer.as_bytes()).unwrap();
            // Keep the connection open, as a keep-alive server does: the client must stop at
            // Content-Length on its own.
            std::thread::sleep(Duration::from_secs(5));
        });
        host
    }

    #[test]
    fn reads_up_to_content_length_on_a_kept_open_connection() {
        let host = serve("HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(
            request(&host, "GET", "/", &[], ""),
            Ok((201, "hello".to_string()))
        );
    }

    #[test]
    fn encodes_everything_but_unreserved_characters() {
        assert_eq!(encode("gpu/prod.json"), "gpu%2Fprod.json");
        assert_eq!(encode("a b+c~"), "a%20b%2Bc~");
    }
}
