//! The headers of OTLP exports read from a file: `OTEL_EXPORTER_OTLP_HEADERS_FILE` and
//! `OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE`, the `_FILE` forms of the standard variables, which
//! carry collector tokens (Honeycomb's `x-honeycomb-team=KEY`, Grafana Cloud's
//! `Authorization=Basic …`).
//!
//! `opentelemetry-otlp` reads the plain variables itself; a file's headers are parsed here and
//! given to the exporter explicitly (gRPC metadata or HTTP headers, see [`OtlpHeaders`]). The
//! format is the spec's: `name=value` entries separated by commas (newlines separate entries
//! too, for a file), spaces around names and values ignored, values percent-encoded (`%20` for
//! a space, `%2C` for a comma, `%25` for `%`).
//!
//! Which variable applies follows the spec, as the crate does for the plain ones: the traces
//! variable (`OTEL_EXPORTER_OTLP_TRACES_HEADERS` or its `_FILE`) if set, else the general one.
//! A variable and its `_FILE` both set is an error, and so is
//! `OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE` with a plain `OTEL_EXPORTER_OTLP_HEADERS`: the crate
//! would add the plain variable's headers to the file's, against the spec.
//!
//! Header values are secrets: they are kept as [`Secret`]s, and no error message shows them,
//! nor the entries they are in.

use std::collections::HashMap;
use std::fmt;

use crate::secret::{self, EnvValueError, Secret};

/// The general variable.
pub const HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// The traces variable (wins over the general one).
pub const TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";

/// Headers read from a `*_HEADERS_FILE`, for the exporter to send with every export.
#[derive(Clone, PartialEq, Eq)]
pub struct OtlpHeaders {
    /// The variable that named the file: `OTEL_EXPORTER_OTLP_HEADERS_FILE` or
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE`.
    pub var: &'static str,
    /// Lowercase names and percent-decoded values, in the file's order; a name given twice
    /// keeps its last value.
    entries: Vec<(String, Secret)>,
}

impl OtlpHeaders {
    /// The header names, in the file's order (for logs: names are not secrets).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(name, _)| name.as_str())
    }

    /// The headers as gRPC metadata (`with_metadata` of the tonic exporter).
    pub fn metadata(&self) -> opentelemetry_otlp::tonic_types::metadata::MetadataMap {
        use axum::http::{HeaderMap, HeaderName, HeaderValue};
        let mut map = HeaderMap::new();
        for (name, value) in &self.entries {
            // Both were checked when parsing.
            if let (Ok(name), Ok(mut value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value.expose()),
            ) {
                value.set_sensitive(true);
                map.insert(name, value);
            }
        }
        opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(map)
    }

    /// The headers for `with_headers` of the HTTP exporter. That method percent-decodes the
    /// values it is given (once more), so each `%` is given as `%25`.
    pub fn http_headers(&self) -> HashMap<String, String> {
        self.entries
            .iter()
            .map(|(name, value)| (name.clone(), value.expose().replace('%', "%25")))
            .collect()
    }
}

/// Names only: the values are secrets.
impl fmt::Debug for OtlpHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpHeaders")
            .field("var", &self.var)
            .field("names", &self.names().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Headers variables that cannot be used. No message shows a header value or an entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadersError {
    /// A variable and its `_FILE` both set, or a file that cannot be read.
    #[error(transparent)]
    Env(#[from] EnvValueError),
    /// An entry of a headers file that is not a header.
    #[error(
        "{var}={path}: entry {entry} is not a valid header ({problem}); expected `name=value` \
         entries separated by commas, with percent-encoded values (the entry is not shown: it \
         may hold a secret)"
    )]
    Malformed {
        /// The `_FILE` variable.
        var: &'static str,
        path: String,
        /// 1-based, among the non-blank entries.
        entry: usize,
        problem: &'static str,
    },
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE` with a plain `OTEL_EXPORTER_OTLP_HEADERS`.
    #[error(
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE and OTEL_EXPORTER_OTLP_HEADERS are both set: \
         the exporter would send OTEL_EXPORTER_OTLP_HEADERS's headers with the file's, while the \
         traces headers should replace them; unset OTEL_EXPORTER_OTLP_HEADERS, or give it as a \
         file (OTEL_EXPORTER_OTLP_HEADERS_FILE)"
    )]
    TracesFileWithPlainHeaders,
}

/// Which form of a headers variable is set: `NAME`, `NAME_FILE` (with what reading its file
/// gave) or neither (`None`). The file is read by [`secret::lookup`], so an empty variable or
/// an empty file counts as unset, as for every secret (a deployment may mount an empty secret
/// file for headers it does not use); a file that cannot be read counts as set, and its error
/// is reported when its form applies.
///
/// # Errors
///
/// Both set (before any error of the file).
fn form(name: &str, get: &impl Fn(&str) -> Option<String>) -> Result<Option<Form>, EnvValueError> {
    let plain = get(name).is_some_and(|v| !v.is_empty());
    // The file alone: the plain variable is hidden so that `lookup` does not compare the two.
    let file = secret::lookup(name, |var| if var == name { None } else { get(var) })
        .transpose()
        .map(Form::File);
    match (plain, file) {
        (true, Some(_)) => Err(EnvValueError::BothSet {
            name: name.to_owned(),
        }),
        (true, None) => Ok(Some(Form::Plain)),
        (false, file) => Ok(file),
    }
}

#[derive(Debug)]
enum Form {
    Plain,
    /// The file's content (trailing newline trimmed), or why it could not be read.
    File(Result<String, EnvValueError>),
}

/// The headers of the headers file that applies, if the one that applies is a file; `None`
/// when no headers variable is set or the one that applies is a plain variable (which the
/// exporter reads itself).
///
/// # Errors
///
/// See [`HeadersError`].
pub fn from_lookup(
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<OtlpHeaders>, HeadersError> {
    let (text, var) = match (form(TRACES_HEADERS, &get)?, form(HEADERS, &get)?) {
        (Some(Form::File(_)), Some(Form::Plain)) => {
            return Err(HeadersError::TracesFileWithPlainHeaders);
        }
        (Some(Form::File(text)), _) => (text, "OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE"),
        (None, Some(Form::File(text))) => (text, "OTEL_EXPORTER_OTLP_HEADERS_FILE"),
        (Some(Form::Plain), _) | (None, Some(Form::Plain) | None) => return Ok(None),
    };
    let entries = parse(&text?).map_err(|(entry, problem)| HeadersError::Malformed {
        var,
        path: get(var).unwrap_or_default(),
        entry,
        problem,
    })?;
    Ok(Some(OtlpHeaders { var, entries }))
}

/// The entries of a headers list: `(lowercase name, decoded value)`, a repeated name keeping
/// its last value. `Err((entry number, problem))` for the first malformed entry.
fn parse(text: &str) -> Result<Vec<(String, Secret)>, (usize, &'static str)> {
    let mut entries: Vec<(String, Secret)> = Vec::new();
    let non_blank = text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty());
    for (i, entry) in non_blank.enumerate() {
        let bad = |problem| (i + 1, problem);
        let (name, value) = entry.split_once('=').ok_or(bad("no `=`"))?;
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            return Err(bad("no name before `=`"));
        }
        let name = axum::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad("the name is not a valid header name"))?
            .as_str()
            .to_owned();
        if value.is_empty() {
            return Err(bad("no value after `=`"));
        }
        let value = percent_decode(value).ok_or(bad(
            "bad percent-encoding: `%` must be followed by two hex digits",
        ))?;
        if !value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            return Err(bad(
                "the value holds characters other than printable ASCII once percent-decoded",
            ));
        }
        entries.retain(|(n, _)| *n != name);
        entries.push((name, Secret::new(value)));
    }
    Ok(entries)
}

/// `%XX` sequences decoded; `None` if a `%` is not followed by two hex digits or the result
/// is not UTF-8.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::secret::tests::vars;

    fn exposed(entries: &[(String, Secret)]) -> Vec<(&str, &str)> {
        entries
            .iter()
            .map(|(n, v)| (n.as_str(), v.expose()))
            .collect()
    }

    #[test]
    fn parses_the_spec_format() {
        let entries = parse("x-honeycomb-team=abc123,Authorization=Basic%20dXNlcjpwYXNz").unwrap();
        assert_eq!(
            exposed(&entries),
            [
                ("x-honeycomb-team", "abc123"),
                ("authorization", "Basic dXNlcjpwYXNz"),
            ]
        );
    }

    #[test]
    fn percent_decoding() {
        // `é` is not ASCII: refused (gRPC metadata is ASCII).
        assert_eq!(parse("a=1,e=caf%C3%A9").unwrap_err().0, 2);
        let entries = parse("a=x%2Cy,b=100%25,c=%3d%3D,d=plain+plus,e=abc==").unwrap();
        assert_eq!(
            exposed(&entries),
            [
                ("a", "x,y"),
                ("b", "100%"),
                ("c", "=="),
                ("d", "plain+plus"),
                ("e", "abc=="),
            ]
        );
        for bad in ["k=%", "k=%2", "k=%zz", "k=a%g1"] {
            assert_eq!(
                parse(bad),
                Err((
                    1,
                    "bad percent-encoding: `%` must be followed by two hex digits"
                )),
                "{bad}"
            );
        }
    }

    #[test]
    fn whitespace_blank_entries_and_newlines() {
        let entries = parse("  a = 1 ,, b=\t2\t,\n c=3\nd=4,\n").unwrap();
        assert_eq!(
            exposed(&entries),
            [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]
        );
        assert_eq!(parse("").unwrap(), []);
        assert_eq!(parse(" , \n").unwrap(), []);
        // Spaces inside a value stay.
        assert_eq!(exposed(&parse("k=a b").unwrap()), [("k", "a b")]);
    }

    #[test]
    fn a_repeated_name_keeps_its_last_value() {
        let entries = parse("k=1,other=2,K=3").unwrap();
        assert_eq!(exposed(&entries), [("other", "2"), ("k", "3")]);
    }

    #[test]
    fn malformed_entries_are_numbered() {
        for (text, entry, problem) in [
            ("a=1,Basic secret", 2, "no `=`"),
            ("=secret", 1, "no name before `=`"),
            (
                "a=1,\n,b c=secret",
                2,
                "the name is not a valid header name",
            ),
            ("k=", 1, "no value after `=`"),
            (
                "k=sec%0Aret",
                1,
                "the value holds characters other than printable ASCII once percent-decoded",
            ),
        ] {
            assert_eq!(parse(text), Err((entry, problem)), "{text:?}");
        }
    }

    /// A file's headers; the traces file wins; the error of a malformed file names the
    /// variable and the path, never the value.
    #[test]
    fn reads_the_file_that_applies() {
        let dir = tempfile::tempdir().unwrap();
        let general = dir.path().join("general");
        let traces = dir.path().join("traces");
        std::fs::write(&general, "x-honeycomb-team=general-key\n").unwrap();
        std::fs::write(&traces, "x-honeycomb-team=traces-key\n").unwrap();
        let general = general.to_str().unwrap();
        let traces = traces.to_str().unwrap();

        let h = from_lookup(vars(&[("OTEL_EXPORTER_OTLP_HEADERS_FILE", general)]))
            .unwrap()
            .unwrap();
        assert_eq!(h.var, "OTEL_EXPORTER_OTLP_HEADERS_FILE");
        assert_eq!(exposed(&h.entries), [("x-honeycomb-team", "general-key")]);

        for both in [
            vars(&[
                ("OTEL_EXPORTER_OTLP_HEADERS_FILE", general),
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE", traces),
            ]),
            vars(&[("OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE", traces)]),
        ] {
            let h = from_lookup(both).unwrap().unwrap();
            assert_eq!(h.var, "OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE");
            assert_eq!(exposed(&h.entries), [("x-honeycomb-team", "traces-key")]);
        }

        // A plain variable that applies is the exporter's to read.
        assert_eq!(from_lookup(vars(&[])), Ok(None));
        assert_eq!(from_lookup(vars(&[(HEADERS, "k=v")])), Ok(None));
        assert_eq!(
            from_lookup(vars(&[
                (TRACES_HEADERS, "k=v"),
                ("OTEL_EXPORTER_OTLP_HEADERS_FILE", general)
            ])),
            Ok(None)
        );
        // An empty headers file (an unused mounted secret) counts as unset: the plain variable
        // applies, and is the exporter's to read.
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let empty = empty.to_str().unwrap();
        assert_eq!(
            from_lookup(vars(&[
                (HEADERS, "k=v"),
                ("OTEL_EXPORTER_OTLP_HEADERS_FILE", empty)
            ])),
            Ok(None)
        );
        assert_eq!(
            from_lookup(vars(&[("OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE", empty)])),
            Ok(None)
        );
        // Empty counts as unset.
        assert!(
            from_lookup(vars(&[
                (HEADERS, ""),
                ("OTEL_EXPORTER_OTLP_HEADERS_FILE", general)
            ]))
            .unwrap()
            .is_some()
        );
    }

    #[test]
    fn malformed_file_is_named_without_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("headers");
        std::fs::write(&file, "x-honeycomb-team=ok,Authorization Basic s3cr3t\n").unwrap();
        let path = file.to_str().unwrap();
        let err = from_lookup(vars(&[("OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE", path)]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE={path}: entry 2 is not a valid header \
                 (no `=`); expected `name=value` entries separated by commas, with \
                 percent-encoded values (the entry is not shown: it may hold a secret)"
            )
        );
        assert!(!err.contains("s3cr3t") && !err.contains("Basic"), "{err}");
    }

    #[test]
    fn both_set_is_an_error_naming_both() {
        for name in [HEADERS, TRACES_HEADERS] {
            let file_var = format!("{name}_FILE");
            let err = from_lookup(vars(&[(name, "k=s3cr3t"), (&file_var, "/run/secrets/h")]))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("both {name} and {file_var} are set")),
                "{err}"
            );
            assert!(!err.contains("s3cr3t"), "{err}");
        }
        // The traces file with the plain general variable: the exporter would mix them.
        let err = from_lookup(vars(&[
            (HEADERS, "k=s3cr3t"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE", "/run/secrets/h"),
        ]))
        .unwrap_err();
        assert_eq!(err, HeadersError::TracesFileWithPlainHeaders);
        assert!(!err.to_string().contains("s3cr3t"));
    }

    #[test]
    fn unreadable_file_names_variable_and_path() {
        let err = from_lookup(vars(&[(
            "OTEL_EXPORTER_OTLP_HEADERS_FILE",
            "/nonexistent/headers",
        )]))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "OTEL_EXPORTER_OTLP_HEADERS_FILE=/nonexistent/headers: cannot read the file"
            ),
            "{err}"
        );
    }

    #[test]
    fn debug_shows_names_only() {
        let h = OtlpHeaders {
            var: "OTEL_EXPORTER_OTLP_HEADERS_FILE",
            entries: parse("authorization=Basic%20s3cr3t").unwrap(),
        };
        let debug = format!("{h:?}");
        assert!(debug.contains("authorization"), "{debug}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }

    /// gRPC metadata carries the decoded values; the HTTP headers re-escape `%`, which the
    /// exporter's `with_headers` decodes once more.
    #[test]
    fn exporter_forms() {
        let h = OtlpHeaders {
            var: "OTEL_EXPORTER_OTLP_HEADERS_FILE",
            entries: parse("Authorization=Basic%20abc,x-pct=100%25%2541").unwrap(),
        };
        let metadata = h.metadata();
        assert_eq!(
            metadata.get("authorization").unwrap().to_str().unwrap(),
            "Basic abc"
        );
        assert_eq!(metadata.get("x-pct").unwrap().to_str().unwrap(), "100%%41");
        let http = h.http_headers();
        assert_eq!(http["authorization"], "Basic abc");
        assert_eq!(http["x-pct"], "100%25%2541");
    }
}
