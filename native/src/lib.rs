//! The per-event pipeline's accept path, compiled.
//!
//! Per event (`check`, or `check_many` for a request's events in one call): the parsed event
//! (the dicts orjson made) in; either the record value's
//! middle (`"timestamp":..` up to the event's `idempotency_key`), its timestamp text and its
//! retry key out, or `None`. `None` is not a refusal: it means "let the Python pipeline
//! decide" (`shared/audit_ingest/domain/pipeline.py`). It is answered for every event the
//! Python pipeline refuses and for the rarer shapes this code does not write (a float, a
//! non-ASCII action name that needs Python's `str.lower`), so a refusal's every-field error
//! list is only ever built in Python.
//!
//! The rules mirror `validation.py` and `model.py` (strict types, no unknown fields, lengths in
//! code points, the free-form walk, the size as compact JSON), the bytes mirror orjson's
//! (`tests/unit/test_compiled.py` holds both to the Python pipeline over generated events).

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// The Python pipeline decides this event (it is refused, or written in a way not done here).
struct Decline;

type Checked<T> = Result<T, Decline>;

// model.py's fixed bounds (a test reads them from there and compares).
const MAX_ID_LENGTH: isize = 256;
const MAX_NAME_LENGTH: isize = 256;
const MAX_MESSAGE_LENGTH: isize = 2048;
const MAX_EMAIL_LENGTH: isize = 320;
const MAX_IDEMPOTENCY_KEY_LENGTH: isize = 256;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `text` as a JSON string, escaped exactly as orjson escapes: `"` and `\`, the five
/// short forms, other control characters as lower-case `\u00xx`, everything else as is.
fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let short: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..at]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(byte >> 4) as usize]);
            out.push(HEX[(byte & 0xf) as usize]);
        } else {
            out.extend_from_slice(short);
        }
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A string's UTF-8 text (Decline for lone surrogates, which orjson cannot write either).
fn utf8<'a>(text: &'a Bound<'_, PyString>) -> Checked<&'a str> {
    text.to_str().map_err(|_| Decline)
}

/// Length in code points, as pydantic and `len()` count.
fn code_points(text: &Bound<'_, PyString>) -> isize {
    // SAFETY: `text` is a live str object; PyUnicode_GetLength only reads its header.
    unsafe { ffi::PyUnicode_GetLength(text.as_ptr()) }
}

/// An exact `str` (what JSON parsing makes; pydantic's strict mode refuses anything else).
fn exact_str<'a, 'py>(value: &'a Bound<'py, PyAny>) -> Checked<&'a Bound<'py, PyString>> {
    if value.is_exact_instance_of::<PyString>() {
        // SAFETY: the exact type was checked just above.
        Ok(unsafe { value.downcast_unchecked::<PyString>() })
    } else {
        Err(Decline)
    }
}

fn exact_dict<'a, 'py>(value: &'a Bound<'py, PyAny>) -> Checked<&'a Bound<'py, PyDict>> {
    if value.is_exact_instance_of::<PyDict>() {
        // SAFETY: the exact type was checked just above.
        Ok(unsafe { value.downcast_unchecked::<PyDict>() })
    } else {
        Err(Decline)
    }
}

/// A string field bounded as `Field(min_length=min, max_length=max)` is.
fn bounded<'a, 'py>(
    value: &'a Bound<'py, PyAny>,
    min: isize,
    max: isize,
) -> Checked<&'a Bound<'py, PyString>> {
    let text = exact_str(value)?;
    let length = code_points(text);
    if length < min || length > max {
        return Err(Decline);
    }
    Ok(text)
}

/// Appends any JSON value (parsed by orjson) as compact JSON; Decline for floats (orjson's
/// float text is not reproduced here) and for anything JSON does not make.
fn write_any(out: &mut Vec<u8>, value: &Bound<'_, PyAny>, depth: usize) -> Checked<()> {
    if depth > 255 {
        return Err(Decline);
    }
    if value.is_exact_instance_of::<PyString>() {
        // SAFETY: the exact type was checked just above.
        write_str(out, utf8(unsafe { value.downcast_unchecked::<PyString>() })?);
    } else if value.is_exact_instance_of::<PyDict>() {
        // SAFETY: the exact type was checked just above.
        let dict = unsafe { value.downcast_unchecked::<PyDict>() };
        out.push(b'{');
        for (index, (key, item)) in dict.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_str(out, utf8(exact_str(&key)?)?);
            out.push(b':');
            write_any(out, &item, depth + 1)?;
        }
        out.push(b'}');
    } else if value.is_exact_instance_of::<PyList>() {
        // SAFETY: the exact type was checked just above.
        let list = unsafe { value.downcast_unchecked::<PyList>() };
        out.push(b'[');
        for (index, item) in list.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_any(out, &item, depth + 1)?;
        }
        out.push(b']');
    } else if value.is_none() {
        out.extend_from_slice(b"null");
    } else if value.is_exact_instance_of::<PyBool>() {
        out.extend_from_slice(if value.is_truthy().map_err(|_| Decline)? { b"true" } else { b"false" });
    } else if value.is_exact_instance_of::<PyInt>() {
        if let Ok(number) = value.extract::<i64>() {
            out.extend_from_slice(number.to_string().as_bytes());
        } else if let Ok(number) = value.extract::<u64>() {
            out.extend_from_slice(number.to_string().as_bytes());
        } else {
            return Err(Decline);
        }
    } else if value.is_exact_instance_of::<PyFloat>() {
        return Err(Decline);
    } else {
        return Err(Decline);
    }
    Ok(())
}

/// `validation._walk`'s rule for `context` and `metadata` (the dict itself at depth 2): no
/// value deeper than `max_depth`, no string value (keys are not bounded) longer than
/// `max_string`. Anything it would report is a Decline.
fn within_limits(value: &Bound<'_, PyAny>, depth: usize, limits: &Limits) -> Checked<()> {
    if depth > limits.max_depth {
        return Err(Decline);
    }
    if value.is_exact_instance_of::<PyString>() {
        // SAFETY: the exact type was checked just above.
        let text = unsafe { value.downcast_unchecked::<PyString>() };
        if code_points(text) > limits.max_string {
            return Err(Decline);
        }
    } else if value.is_exact_instance_of::<PyDict>() {
        // SAFETY: the exact type was checked just above.
        for item in unsafe { value.downcast_unchecked::<PyDict>() }.values() {
            within_limits(&item, depth + 1, limits)?;
        }
    } else if value.is_exact_instance_of::<PyList>() {
        // SAFETY: the exact type was checked just above.
        for item in unsafe { value.downcast_unchecked::<PyList>() }.iter() {
            within_limits(&item, depth + 1, limits)?;
        }
    }
    Ok(())
}

struct Limits {
    max_depth: usize,
    max_string: isize,
    max_event_bytes: usize,
}

// -- timestamps: timestamps.py's RFC 3339 rules -------------------------------------------

fn number(bytes: &[u8]) -> Option<i64> {
    let mut value: i64 = 0;
    for &byte in bytes {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(byte - b'0');
    }
    Some(value)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Microseconds since the epoch (UTC) of an RFC 3339 date-time, as `parse_rfc3339` reads it
/// (fraction cut to microseconds); None for anything it refuses (a test holds the two to the
/// same texts).
fn parse_rfc3339(text: &[u8]) -> Option<i64> {
    if text.len() < 20 || text[4] != b'-' || text[7] != b'-' || text[13] != b':' || text[16] != b':'
    {
        return None;
    }
    if !matches!(text[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = number(&text[0..4])?;
    let month = number(&text[5..7])?;
    let day = number(&text[8..10])?;
    let hour = number(&text[11..13])?;
    let minute = number(&text[14..16])?;
    let second = number(&text[17..19])?;
    if year < 1 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &text[19..];
    let mut micros: i64 = 0;
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|byte| byte.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        for place in 0..6 {
            let digit = if place < digits { i64::from(rest[1 + place] - b'0') } else { 0 };
            micros = micros * 10 + digit;
        }
        rest = &rest[1 + digits..];
    }
    let offset_minutes = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = number(&[*h1, *h2])?;
            let minutes = number(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let total = hours * 60 + minutes;
            if *sign == b'-' {
                -total
            } else {
                total
            }
        }
        _ => return None,
    };
    let local = days_from_civil(year, month, day) * MICROS_PER_DAY
        + ((hour * 60 + minute) * 60 + second) * 1_000_000
        + micros;
    let utc = local - offset_minutes * 60_000_000;
    // datetime's range, in UTC (astimezone raises past it; Python refuses the event).
    let (utc_year, _, _) = civil_from_days(utc.div_euclid(MICROS_PER_DAY));
    if !(1..=9999).contains(&utc_year) {
        return None;
    }
    Some(utc)
}

/// `format_rfc3339_ms`: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn format_rfc3339_ms(utc: i64) -> String {
    let (year, month, day) = civil_from_days(utc.div_euclid(MICROS_PER_DAY));
    let of_day = utc.rem_euclid(MICROS_PER_DAY);
    let seconds = of_day / 1_000_000;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        year,
        month,
        day,
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        of_day % 1_000_000 / 1000
    )
}

/// `is_written_as_formatted`: the text is what `format_rfc3339_ms` writes for it.
fn is_written_as_formatted(text: &[u8]) -> bool {
    text.len() == 24 && text[10] == b'T' && text[19] == b'.' && text[23] == b'Z'
}

// -- the event ---------------------------------------------------------------------------

/// Appends `"name":value` for each field of a structured block, in the model's field order,
/// skipping absent and `null` fields (`enrichment._present`). `rules` gives each field's
/// name, bounds and whether it is required.
#[derive(PartialEq)]
enum Kind {
    Text,
    Email,
    Bool,
}

struct FieldRule {
    name: &'static str,
    kind: Kind,
    min: isize,
    max: isize,
    required: bool,
}

const fn text_field(name: &'static str, min: isize, max: isize, required: bool) -> FieldRule {
    FieldRule { name, kind: Kind::Text, min, max, required }
}

const ACTOR: [FieldRule; 4] = [
    text_field("id", 1, MAX_ID_LENGTH, true),
    text_field("type", 1, MAX_NAME_LENGTH, false),
    FieldRule { name: "email", kind: Kind::Email, min: 0, max: MAX_EMAIL_LENGTH, required: false },
    text_field("name", 1, MAX_NAME_LENGTH, false),
];
const ACTION: [FieldRule; 1] = [text_field("name", 1, MAX_NAME_LENGTH, true)];
const RESULT: [FieldRule; 3] = [
    FieldRule { name: "success", kind: Kind::Bool, min: 0, max: 0, required: true },
    text_field("code", 1, MAX_NAME_LENGTH, false),
    text_field("message", 0, MAX_MESSAGE_LENGTH, false),
];
const RESOURCE: [FieldRule; 3] = [
    text_field("type", 1, MAX_NAME_LENGTH, true),
    text_field("id", 1, MAX_ID_LENGTH, true),
    text_field("name", 1, MAX_NAME_LENGTH, false),
];

/// The block's values in `rules`' order (None: absent or null); Decline for an unknown
/// field, a missing required one, or a value its rule refuses.
fn block_values<'py, const N: usize>(
    value: &Bound<'py, PyAny>,
    rules: &[FieldRule; N],
    check_email: &Bound<'py, PyAny>,
) -> Checked<[Option<Bound<'py, PyAny>>; N]> {
    let dict = exact_dict(value)?;
    let mut found: [Option<Bound<'py, PyAny>>; N] = std::array::from_fn(|_| None);
    for (key, item) in dict.iter() {
        let name = utf8(exact_str(&key)?)?;
        let slot = rules.iter().position(|rule| rule.name == name).ok_or(Decline)?;
        if !item.is_none() {
            found[slot] = Some(item);
        }
    }
    for (rule, slot) in rules.iter().zip(found.iter()) {
        match slot {
            None if rule.required => return Err(Decline),
            None => {}
            Some(item) if rule.kind == Kind::Bool => {
                if !item.is_exact_instance_of::<PyBool>() {
                    return Err(Decline);
                }
            }
            Some(item) => {
                let text = bounded(item, rule.min, rule.max)?;
                // email-validator's syntax rules, through model.py's cache.
                if rule.kind == Kind::Email && check_email.call1((text,)).is_err() {
                    return Err(Decline);
                }
            }
        }
    }
    Ok(found)
}

fn write_block<const N: usize>(
    out: &mut Vec<u8>,
    name: &str,
    rules: &[FieldRule; N],
    values: &[Option<Bound<'_, PyAny>>; N],
) -> Checked<()> {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":{");
    let mut first = true;
    for (rule, value) in rules.iter().zip(values.iter()) {
        if let Some(value) = value {
            if !first {
                out.push(b',');
            }
            first = false;
            write_str(out, rule.name);
            out.push(b':');
            write_any(out, value, 0)?;
        }
    }
    out.push(b'}');
    Ok(())
}

/// The top-level fields of an event (None: absent or null).
#[derive(Default)]
struct Event<'py> {
    actor: Option<Bound<'py, PyAny>>,
    action: Option<Bound<'py, PyAny>>,
    resource: Option<Bound<'py, PyAny>>,
    timestamp: Option<Bound<'py, PyAny>>,
    result: Option<Bound<'py, PyAny>>,
    context: Option<Bound<'py, PyAny>>,
    metadata: Option<Bound<'py, PyAny>>,
    tenant_id: Option<Bound<'py, PyAny>>,
    idempotency_key: Option<Bound<'py, PyAny>>,
}

impl<'py> Event<'py> {
    fn read(payload: &Bound<'py, PyAny>) -> Checked<Self> {
        let mut event = Event::default();
        for (key, value) in exact_dict(payload)?.iter() {
            let slot = match utf8(exact_str(&key)?)? {
                "actor" => &mut event.actor,
                "action" => &mut event.action,
                "resource" => &mut event.resource,
                "timestamp" => &mut event.timestamp,
                "result" => &mut event.result,
                "context" => &mut event.context,
                "metadata" => &mut event.metadata,
                "tenant_id" => &mut event.tenant_id,
                "idempotency_key" => &mut event.idempotency_key,
                _ => return Err(Decline), // extra="forbid"
            };
            if !value.is_none() {
                *slot = Some(value);
            }
        }
        Ok(event)
    }
}

/// What one request's events are checked against: made once per request.
#[pyclass(frozen, module = "audit_ingest_native._native")]
struct Checker {
    tenant_id: String,
    received_text: String,
    /// `received_at + future_skew` in microseconds since the epoch: the latest timestamp.
    latest: i64,
    limits: Limits,
    /// model.py's `_checked_email`: returns the address or raises ValueError.
    check_email: Py<PyAny>,
}

#[pymethods]
impl Checker {
    #[new]
    #[pyo3(signature = (*, tenant_id, received_text, latest, max_depth, max_string_length, max_event_bytes, check_email))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        tenant_id: String,
        received_text: String,
        latest: i64,
        max_depth: usize,
        max_string_length: isize,
        max_event_bytes: usize,
        check_email: Py<PyAny>,
    ) -> PyResult<Self> {
        if received_text.len() != 24 || !received_text.is_ascii() {
            return Err(PyValueError::new_err("received_text must be format_rfc3339_ms's text"));
        }
        let limits = Limits { max_depth, max_string: max_string_length, max_event_bytes };
        Ok(Checker { tenant_id, received_text, latest, limits, check_email })
    }

    /// `(middle, timestamp, idempotency_key)` of an event the Python pipeline would accept,
    /// or None (the Python pipeline decides). `middle` is the record value from `"timestamp"`
    /// through the event's own fields; `default_text` is the CloudEvent's `time` as
    /// `format_rfc3339_ms` writes it, when the envelope had one.
    #[pyo3(signature = (payload, default_text=None))]
    fn check<'py>(
        &self,
        payload: &Bound<'py, PyAny>,
        default_text: Option<Bound<'py, PyString>>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let py = payload.py();
        Ok(self.accept(payload, default_text).ok().map(|(middle, timestamp, key)| {
            let key = key.map_or_else(|| py.None().into_bound(py), |key| key.into_any());
            PyTuple::new(py, [PyBytes::new(py, &middle).into_any(), timestamp.into_any(), key])
                .expect("a tuple of three")
        }))
    }

    /// `check` over a request's events in one call (a list in, a list of the same length
    /// out): `default_texts`, when given, holds each event's `default_text`.
    #[pyo3(signature = (payloads, default_texts=None))]
    fn check_many<'py>(
        &self,
        payloads: &Bound<'py, PyList>,
        default_texts: Option<&Bound<'py, PyList>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let py = payloads.py();
        if default_texts.is_some_and(|texts| texts.len() != payloads.len()) {
            return Err(PyValueError::new_err("default_texts must hold one entry per payload"));
        }
        let out = PyList::empty(py);
        for (position, payload) in payloads.iter().enumerate() {
            let default_text = match default_texts {
                None => None,
                Some(texts) => {
                    let text = texts.get_item(position)?;
                    if text.is_none() {
                        None
                    } else {
                        Some(text.downcast_into::<PyString>()?)
                    }
                }
            };
            out.append(self.check(&payload, default_text)?)?;
        }
        Ok(out)
    }
}

type Accepted<'py> = (Vec<u8>, Bound<'py, PyString>, Option<Bound<'py, PyString>>);

impl Checker {
    fn accept<'py>(
        &self,
        payload: &Bound<'py, PyAny>,
        default_text: Option<Bound<'py, PyString>>,
    ) -> Checked<Accepted<'py>> {
        let py = payload.py();
        let event = Event::read(payload)?;
        let check_email = self.check_email.bind(py);
        let actor = block_values(event.actor.as_ref().ok_or(Decline)?, &ACTOR, check_email)?;
        let resource = block_values(event.resource.as_ref().ok_or(Decline)?, &RESOURCE, check_email)?;
        let [action] = block_values(event.action.as_ref().ok_or(Decline)?, &ACTION, check_email)?;
        let action = exact_str(action.as_ref().ok_or(Decline)?)?.clone();
        let result = match &event.result {
            None => None,
            Some(result) => Some(block_values(result, &RESULT, check_email)?),
        };
        if let Some(tenant) = &event.tenant_id {
            if utf8(exact_str(tenant)?)? != self.tenant_id {
                return Err(Decline);
            }
        }
        let key = match &event.idempotency_key {
            None => None,
            Some(key) => Some(bounded(key, 1, MAX_IDEMPOTENCY_KEY_LENGTH)?.clone()),
        };
        for free in [&event.context, &event.metadata].into_iter().flatten() {
            exact_dict(free)?;
            within_limits(free, 2, &self.limits)?;
        }
        let timestamp: Bound<'py, PyString> = match &event.timestamp {
            None => default_text
                .unwrap_or_else(|| PyString::new(py, &self.received_text)),
            Some(sent) => {
                let sent = exact_str(sent)?;
                let text = utf8(sent)?.as_bytes();
                let moment = parse_rfc3339(text).ok_or(Decline)?;
                if moment > self.latest {
                    return Err(Decline); // timestamp_in_future
                }
                if is_written_as_formatted(text) {
                    sent.clone()
                } else {
                    PyString::new(py, &format_rfc3339_ms(moment))
                }
            }
        };
        // The size limit: the event as compact JSON, as sent (nulls and all).
        let mut out = Vec::with_capacity(512);
        write_any(&mut out, payload, 0)?;
        if out.len() > self.limits.max_event_bytes {
            return Err(Decline);
        }
        out.clear();
        // The record's middle, in enrichment.enrich's order.
        let timestamp_text = utf8(&timestamp)?;
        out.extend_from_slice(b"\"timestamp\":");
        write_str(&mut out, timestamp_text);
        out.extend_from_slice(b",\"event_date\":");
        write_str(&mut out, timestamp_text.get(..10).ok_or(Decline)?);
        out.extend_from_slice(b",\"received_at\":");
        write_str(&mut out, &self.received_text);
        write_block(&mut out, "actor", &ACTOR, &actor)?;
        out.extend_from_slice(b",\"action\":{\"name\":");
        let name = utf8(&action)?;
        if name.is_ascii() {
            write_str(&mut out, &name.to_ascii_lowercase());
        } else {
            // Python's str.lower (Unicode's rules as Python applies them), not Rust's.
            let lower = action.call_method0("lower").map_err(|_| Decline)?;
            write_str(&mut out, utf8(exact_str(&lower)?)?);
        }
        out.push(b'}');
        write_block(&mut out, "resource", &RESOURCE, &resource)?;
        if let Some(result) = &result {
            write_block(&mut out, "result", &RESULT, result)?;
        }
        if let Some(context) = &event.context {
            out.extend_from_slice(b",\"context\":");
            write_any(&mut out, context, 0)?;
        }
        if let Some(metadata) = &event.metadata {
            out.extend_from_slice(b",\"metadata\":");
            write_any(&mut out, metadata, 0)?;
        }
        if let Some(key) = &key {
            out.extend_from_slice(b",\"idempotency_key\":");
            write_str(&mut out, utf8(key)?);
        }
        Ok((out, timestamp, key))
    }
}


/// `s` as orjson writes a JSON string (the tests' handle on `write_str`).
#[pyfunction]
fn dumps_str<'py>(py: Python<'py>, text: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyBytes>> {
    let mut out = Vec::new();
    write_str(&mut out, text.to_str()?);
    Ok(PyBytes::new(py, &out))
}

/// Microseconds since the epoch of an RFC 3339 text, or None (the tests' handle on
/// `parse_rfc3339`), and its `format_rfc3339_ms` text.
#[pyfunction]
fn parse_timestamp(text: &str) -> Option<(i64, String)> {
    parse_rfc3339(text.as_bytes()).map(|moment| (moment, format_rfc3339_ms(moment)))
}

/// The event's top-level fields, in the model's order (`Event::read` matches these names).
const EVENT_FIELDS: [&str; 9] = [
    "actor",
    "action",
    "resource",
    "timestamp",
    "result",
    "context",
    "metadata",
    "tenant_id",
    "idempotency_key",
];

/// The rules this module applies, as data: `{block: [(name, kind, min, max, required)]}` and
/// `"event"`: the top-level names. A test compares them with the model's JSON schema, so a
/// field added to or changed in model.py fails it until this module follows.
#[pyfunction]
fn schema(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    let blocks: [(&str, &[FieldRule]); 4] =
        [("actor", &ACTOR), ("action", &ACTION), ("resource", &RESOURCE), ("result", &RESULT)];
    for (block, rules) in blocks {
        let fields = rules
            .iter()
            .map(|rule| {
                let kind = match rule.kind {
                    Kind::Text => "text",
                    Kind::Email => "email",
                    Kind::Bool => "bool",
                };
                (rule.name, kind, rule.min, rule.max, rule.required)
            })
            .collect::<Vec<_>>();
        out.set_item(block, fields)?;
    }
    out.set_item("event", EVENT_FIELDS.to_vec())?;
    Ok(out)
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Checker>()?;
    module.add_function(wrap_pyfunction!(dumps_str, module)?)?;
    module.add_function(wrap_pyfunction!(parse_timestamp, module)?)?;
    module.add_function(wrap_pyfunction!(schema, module)?)?;
    module.add("MAX_ID_LENGTH", MAX_ID_LENGTH)?;
    module.add("MAX_NAME_LENGTH", MAX_NAME_LENGTH)?;
    module.add("MAX_MESSAGE_LENGTH", MAX_MESSAGE_LENGTH)?;
    module.add("MAX_EMAIL_LENGTH", MAX_EMAIL_LENGTH)?;
    module.add("MAX_IDEMPOTENCY_KEY_LENGTH", MAX_IDEMPOTENCY_KEY_LENGTH)?;
    Ok(())
}
