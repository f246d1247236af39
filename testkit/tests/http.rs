//! HttpServer: raw HTTP/1.1 over TcpStream, keep-alive, close, echo,
//! counting, stop and start again.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use testkit::{dead_endpoint, HttpServer};

/// A parsed response: status code, headers (lower-cased names), body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response with a Content-Length body.
fn read_response(reader: &mut BufReader<TcpStream>) -> io::Result<Response> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let status = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').unwrap();
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn connect(server: &HttpServer) -> (TcpStream, BufReader<TcpStream>) {
    let stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let reader = BufReader::new(stream.try_clone().unwrap());
    (stream, reader)
}

#[test]
fn keep_alive_close_echo_and_counting() {
    let server = HttpServer::start("a").unwrap();
    let port = server.port();
    assert_eq!(server.name(), "a");
    assert_eq!(server.endpoint(), format!("127.0.0.1:{port}"));
    assert_eq!(server.url(), format!("http://127.0.0.1:{port}"));
    assert_eq!(server.addr().to_string(), server.endpoint());
    assert!(server.is_running());

    // Two requests on one connection.
    let (mut stream, mut reader) = connect(&server);
    for path in ["/first", "/second?q=1"] {
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let response = read_response(&mut reader).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"a");
        assert_eq!(response.header("x-server"), Some("a"));
        assert_eq!(response.header("content-type"), Some("text/plain"));
        assert_eq!(response.header("connection"), None);
    }

    // Echo, with a Content-Length body and a chunked one, pipelined.
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world\
              POST /echo?x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
    let response = read_response(&mut reader).unwrap();
    assert_eq!(response.body, b"hello world");
    assert_eq!(response.header("x-server"), Some("a"));
    let response = read_response(&mut reader).unwrap();
    assert_eq!(response.body, b"abcde");

    // A body on another path is read and ignored.
    write!(
        stream,
        "POST /other HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
    )
    .unwrap();
    assert_eq!(read_response(&mut reader).unwrap().body, b"a");

    // Connection: close ends the connection after the response.
    write!(stream, "GET /last HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    let response = read_response(&mut reader).unwrap();
    assert_eq!(response.body, b"a");
    assert_eq!(response.header("connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(reader.read_to_end(&mut rest).unwrap(), 0);

    // HTTP/1.0 closes by default.
    let (mut stream, mut reader) = connect(&server);
    write!(stream, "GET /old HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut reader).unwrap().body, b"a");
    assert_eq!(reader.read_to_end(&mut rest).unwrap(), 0);

    // Malformed requests get 400 and are not counted.
    let (mut stream, mut reader) = connect(&server);
    write!(stream, "nonsense\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut reader).unwrap().status, 400);

    assert_eq!(server.requests(), 7);
    assert_eq!(server.connections(), 3);
    assert_eq!(
        server.paths(),
        [
            "/first",
            "/second?q=1",
            "/echo",
            "/echo?x",
            "/other",
            "/last",
            "/old"
        ]
    );
    server.reset_stats();
    assert_eq!(server.requests(), 0);
    assert!(server.paths().is_empty());
}

#[test]
fn stop_refuses_and_resets_then_start_again_on_same_port() {
    let mut server = HttpServer::start("b").unwrap();
    let port = server.port();
    let (mut idle, mut idle_reader) = connect(&server);
    write!(idle, "GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut idle_reader).unwrap().body, b"b");

    server.stop();
    assert!(!server.is_running());
    let err = TcpStream::connect(server.addr()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    // The idle keep-alive connection was closed by the server.
    let mut rest = Vec::new();
    let closed = match idle_reader.read_to_end(&mut rest) {
        Ok(n) => n == 0,
        Err(err) => err.kind() == io::ErrorKind::ConnectionReset,
    };
    assert!(closed);
    server.stop(); // idempotent

    server.start_again().unwrap();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    let (mut stream, mut reader) = connect(&server);
    write!(stream, "GET /again HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut reader).unwrap().body, b"b");
    assert_eq!(server.requests(), 2, "counters survive restarts");
    server.start_again().unwrap(); // no-op while running

    let addr = server.addr();
    drop(server);
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn start_again_on_a_taken_port_is_addr_in_use() {
    let mut server = HttpServer::start("c").unwrap();
    server.stop();
    let squatter = std::net::TcpListener::bind(server.addr()).unwrap();
    let err = server.start_again().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert!(!server.is_running());
    drop(squatter);
    server.start_again().unwrap();
    assert!(server.is_running());
}

#[test]
fn many_keep_alive_requests_from_several_threads() {
    let server = HttpServer::start("bench").unwrap();
    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let addr = server.addr();
            thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.set_nodelay(true).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                for _ in 0..500 {
                    stream
                        .write_all(b"GET /x HTTP/1.1\r\nHost: b\r\n\r\n")
                        .unwrap();
                    assert_eq!(read_response(&mut reader).unwrap().body, b"bench");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    eprintln!("2000 keep-alive requests in {:?}", started.elapsed());
    assert_eq!(server.requests(), 2000);
    assert_eq!(server.connections(), 4);
}

#[test]
fn dead_endpoint_refuses_connections() {
    let endpoint = dead_endpoint().unwrap();
    assert!(endpoint.starts_with("127.0.0.1:"));
    let err = TcpStream::connect(&endpoint).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
}

#[test]
fn names_with_control_characters_are_rejected() {
    let err = HttpServer::start("a\r\nX-Evil: 1").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn hanging_reads_requests_but_never_answers_until_turned_off() {
    let mut server = HttpServer::start("h").unwrap();
    assert!(!server.is_hanging());
    // A keep-alive connection opened while the server still answers.
    let (mut before, mut before_reader) = connect(&server);
    write!(before, "GET /before HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut before_reader).unwrap().body, b"h");

    server.set_hanging(true);
    assert!(server.is_hanging());
    let silent = |stream: &TcpStream, reader: &mut BufReader<TcpStream>| {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 64];
        let err = reader
            .read(&mut buf)
            .expect_err("an answer from a hanging server");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{err}"
        );
    };
    // Connections are accepted and requests read (and counted), on new
    // connections and on the open keep-alive one, but not answered.
    let (mut hung, mut hung_reader) = connect(&server);
    write!(hung, "GET /hung HTTP/1.1\r\n\r\n").unwrap();
    silent(&hung, &mut hung_reader);
    write!(before, "POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi").unwrap();
    silent(&before, &mut before_reader);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.requests() < 3 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.requests(), 3);
    assert_eq!(server.paths(), ["/before", "/hung", "/echo"]);

    // Turned off: new requests are answered; the ones already read stay
    // unanswered.
    server.set_hanging(false);
    let (mut after, mut after_reader) = connect(&server);
    write!(after, "GET /after HTTP/1.1\r\n\r\n").unwrap();
    let response = read_response(&mut after_reader).unwrap();
    assert_eq!(response.body, b"h");
    assert_eq!(response.header("x-server"), Some("h"));
    silent(&hung, &mut hung_reader);

    // A client closing its hung connection frees the server's thread;
    // stop closes the others.
    drop((hung, hung_reader));
    server.stop();
    let mut rest = Vec::new();
    before
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let closed = match before_reader.read_to_end(&mut rest) {
        Ok(_) => rest.is_empty(),
        Err(err) => err.kind() == io::ErrorKind::ConnectionReset,
    };
    assert!(closed, "stop closes hung connections: {rest:?}");

    // The mode survives a restart.
    server.set_hanging(true);
    server.start_again().unwrap();
    let (mut again, mut again_reader) = connect(&server);
    write!(again, "GET /again HTTP/1.1\r\n\r\n").unwrap();
    silent(&again, &mut again_reader);
    server.set_hanging(false);
    let (mut fresh, mut fresh_reader) = connect(&server);
    write!(fresh, "GET /fresh HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut fresh_reader).unwrap().body, b"h");
}
