//! Geo commands: GEOADD, GEODIST, GEOHASH, GEOPOS, GEORADIUS[_RO],
//! GEORADIUSBYMEMBER[_RO], GEOSEARCH, GEOSEARCHSTORE.
//!
//! Positions live in sorted sets: the score of a member is the 52-bit
//! interleaved geohash of its position (step 26, latitude limited to the
//! Web Mercator range ±85.05112878) exactly as Redis computes it, so the
//! scores, decoded positions, distances and search results match Redis
//! bit for bit. Searches follow Redis's algorithm: estimate a geohash step
//! from the radius, scan the center box and its 8 neighbours as score
//! ranges, keep the points that pass the exact distance (or box) test, then
//! sort (a stable sort, or Redis's partial quicksort when COUNT truncates).

use super::{eq_ic, parse_int, CmdError, CmdImpl, CmdResult, Cx, Lock, SYNTAX, WRONGTYPE};
use crate::keyspace::smallbytes::SmallBytes;
use crate::keyspace::Value;
use crate::types::zset::{ScoreRange, ZSet};
use std::sync::atomic::Ordering;

pub static COMMANDS: &[CmdImpl] = &[
    CmdImpl { name: "geoadd", handler: geoadd, lock: Lock::Keys },
    CmdImpl { name: "geodist", handler: geodist, lock: Lock::Keys },
    CmdImpl { name: "geohash", handler: geohash, lock: Lock::Keys },
    CmdImpl { name: "geopos", handler: geopos, lock: Lock::Keys },
    CmdImpl { name: "georadius", handler: georadius, lock: Lock::Keys },
    CmdImpl { name: "georadius_ro", handler: georadius_ro, lock: Lock::Keys },
    CmdImpl { name: "georadiusbymember", handler: georadiusbymember, lock: Lock::Keys },
    CmdImpl { name: "georadiusbymember_ro", handler: georadiusbymember_ro, lock: Lock::Keys },
    CmdImpl { name: "geosearch", handler: geosearch, lock: Lock::Keys },
    CmdImpl { name: "geosearchstore", handler: geosearchstore, lock: Lock::Keys },
];

// ------------------------------------------------------------ geohash math

const LAT_MIN: f64 = -85.05112878;
const LAT_MAX: f64 = 85.05112878;
const LON_MIN: f64 = -180.0;
const LON_MAX: f64 = 180.0;
const STEP_MAX: u8 = 26;
const EARTH_RADIUS_M: f64 = 6372797.560856;
const MERCATOR_MAX: f64 = 20037726.37;
const D_R: f64 = std::f64::consts::PI / 180.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct Bits {
    bits: u64,
    step: u8,
}

impl Bits {
    fn is_zero(&self) -> bool {
        self.bits == 0 && self.step == 0
    }
}

#[derive(Clone, Copy, Debug)]
struct Range {
    min: f64,
    max: f64,
}

#[derive(Clone, Copy, Debug)]
struct Area {
    lon: Range,
    lat: Range,
}

const WGS84_LON: Range = Range { min: LON_MIN, max: LON_MAX };
const WGS84_LAT: Range = Range { min: LAT_MIN, max: LAT_MAX };

fn deg_rad(a: f64) -> f64 {
    a * D_R
}

fn rad_deg(a: f64) -> f64 {
    a / D_R
}

/// Spread the bits of `x` over the even positions and `y` over the odd ones.
fn interleave64(xlo: u32, ylo: u32) -> u64 {
    fn spread(v: u32) -> u64 {
        let mut v = v as u64;
        v = (v | (v << 16)) & 0x0000_FFFF_0000_FFFF;
        v = (v | (v << 8)) & 0x00FF_00FF_00FF_00FF;
        v = (v | (v << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
        v = (v | (v << 2)) & 0x3333_3333_3333_3333;
        (v | (v << 1)) & 0x5555_5555_5555_5555
    }
    spread(xlo) | (spread(ylo) << 1)
}

/// Inverse of [`interleave64`]: even bits in the low half, odd bits in the high half.
fn deinterleave64(v: u64) -> u64 {
    fn squash(mut v: u64) -> u64 {
        v &= 0x5555_5555_5555_5555;
        v = (v | (v >> 1)) & 0x3333_3333_3333_3333;
        v = (v | (v >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
        v = (v | (v >> 4)) & 0x00FF_00FF_00FF_00FF;
        v = (v | (v >> 8)) & 0x0000_FFFF_0000_FFFF;
        (v | (v >> 16)) & 0x0000_0000_FFFF_FFFF
    }
    squash(v) | (squash(v >> 1) << 32)
}

/// Redis's geohashEncode: None outside the WGS84 limits or the ranges.
fn encode(lon_r: Range, lat_r: Range, lon: f64, lat: f64, step: u8) -> Option<Bits> {
    if step == 0 || step > 32 {
        return None;
    }
    if !(LON_MIN..=LON_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return None;
    }
    if lat < lat_r.min || lat > lat_r.max || lon < lon_r.min || lon > lon_r.max {
        return None;
    }
    let scale = (1u64 << step) as f64;
    let lat_off = (lat - lat_r.min) / (lat_r.max - lat_r.min) * scale;
    let lon_off = (lon - lon_r.min) / (lon_r.max - lon_r.min) * scale;
    Some(Bits { bits: interleave64(lat_off as u32, lon_off as u32), step })
}

fn decode(lon_r: Range, lat_r: Range, h: Bits) -> Option<Area> {
    if h.is_zero() || h.step > 63 {
        return None;
    }
    let sep = deinterleave64(h.bits);
    let lat_scale = lat_r.max - lat_r.min;
    let lon_scale = lon_r.max - lon_r.min;
    let ilat = sep as u32;
    let ilon = (sep >> 32) as u32;
    let div = (1u64 << h.step) as f64;
    Some(Area {
        lat: Range {
            min: lat_r.min + (ilat as f64 / div) * lat_scale,
            max: lat_r.min + (ilat.wrapping_add(1) as f64 / div) * lat_scale,
        },
        lon: Range {
            min: lon_r.min + (ilon as f64 / div) * lon_scale,
            max: lon_r.min + (ilon.wrapping_add(1) as f64 / div) * lon_scale,
        },
    })
}

fn area_center(a: &Area) -> [f64; 2] {
    let lon = ((a.lon.min + a.lon.max) / 2.0).clamp(LON_MIN, LON_MAX);
    let lat = ((a.lat.min + a.lat.max) / 2.0).clamp(LAT_MIN, LAT_MAX);
    [lon, lat]
}

/// C's `(uint64_t)double` as gcc emits it on x86-64.
fn c_f64_to_u64(d: f64) -> u64 {
    const TWO63: f64 = 9223372036854775808.0;
    fn cvtt(d: f64) -> u64 {
        if d.is_nan() || !(-TWO63..TWO63).contains(&d) {
            0x8000_0000_0000_0000
        } else {
            d as i64 as u64
        }
    }
    if d < TWO63 {
        cvtt(d)
    } else {
        cvtt(d - TWO63) ^ 0x8000_0000_0000_0000
    }
}

/// Position (longitude, latitude) of a zset score (Redis's decodeGeohash).
fn decode_score(score: f64) -> [f64; 2] {
    let h = Bits { bits: c_f64_to_u64(score), step: STEP_MAX };
    match decode(WGS84_LON, WGS84_LAT, h) {
        Some(a) => area_center(&a),
        None => [0.0, 0.0],
    }
}

fn align52(h: Bits) -> u64 {
    h.bits << (52 - h.step as u32 * 2)
}

fn move_x(h: &mut Bits, d: i8) {
    if d == 0 {
        return;
    }
    let mut x = h.bits & 0xaaaa_aaaa_aaaa_aaaa;
    let y = h.bits & 0x5555_5555_5555_5555;
    let zz = 0x5555_5555_5555_5555u64 >> (64 - h.step as u32 * 2);
    if d > 0 {
        x = x.wrapping_add(zz + 1);
    } else {
        x |= zz;
        x = x.wrapping_sub(zz + 1);
    }
    x &= 0xaaaa_aaaa_aaaa_aaaau64 >> (64 - h.step as u32 * 2);
    h.bits = x | y;
}

fn move_y(h: &mut Bits, d: i8) {
    if d == 0 {
        return;
    }
    let x = h.bits & 0xaaaa_aaaa_aaaa_aaaa;
    let mut y = h.bits & 0x5555_5555_5555_5555;
    let zz = 0xaaaa_aaaa_aaaa_aaaau64 >> (64 - h.step as u32 * 2);
    if d > 0 {
        y = y.wrapping_add(zz + 1);
    } else {
        y |= zz;
        y = y.wrapping_sub(zz + 1);
    }
    y &= 0x5555_5555_5555_5555u64 >> (64 - h.step as u32 * 2);
    h.bits = x | y;
}

fn moved(h: Bits, dx: i8, dy: i8) -> Bits {
    let mut n = h;
    move_x(&mut n, dx);
    move_y(&mut n, dy);
    n
}

// Indexes into the 9 search boxes, in Redis's scan order.
const C: usize = 0;
const N: usize = 1;
const S: usize = 2;
const E: usize = 3;
const W: usize = 4;
const NE: usize = 5;
const NW: usize = 6;
const SE: usize = 7;
const SW: usize = 8;

fn boxes(h: Bits) -> [Bits; 9] {
    let mut b = [h; 9];
    b[N] = moved(h, 0, 1);
    b[S] = moved(h, 0, -1);
    b[E] = moved(h, 1, 0);
    b[W] = moved(h, -1, 0);
    b[NE] = moved(h, 1, 1);
    b[NW] = moved(h, -1, 1);
    b[SE] = moved(h, 1, -1);
    b[SW] = moved(h, -1, -1);
    b
}

fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS_M * (deg_rad(lat2) - deg_rad(lat1)).abs()
}

/// Redis's haversine distance in meters.
fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let lon1r = deg_rad(lon1);
    let lon2r = deg_rad(lon2);
    let v = ((lon2r - lon1r) / 2.0).sin();
    if v == 0.0 {
        return lat_distance(lat1, lat2);
    }
    let lat1r = deg_rad(lat1);
    let lat2r = deg_rad(lat2);
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

fn estimate_steps(range_m: f64, lat: f64) -> u8 {
    if range_m == 0.0 {
        return 26;
    }
    let mut r = range_m;
    let mut step: i32 = 1;
    while r < MERCATOR_MAX {
        r *= 2.0;
        step += 1;
    }
    step -= 2;
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, 26) as u8
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Radius(f64),
    Rect { width: f64, height: f64 },
}

#[derive(Clone, Copy, Debug)]
struct Shape {
    xy: [f64; 2],
    /// Meters per unit.
    conversion: f64,
    kind: Kind,
}

/// [min lon, min lat, max lon, max lat] of the search area.
fn bounding_box(s: &Shape) -> [f64; 4] {
    let [lon, lat] = s.xy;
    let (h, w) = match s.kind {
        Kind::Radius(r) => (s.conversion * r, s.conversion * r),
        Kind::Rect { width, height } => (s.conversion * (height / 2.0), s.conversion * (width / 2.0)),
    };
    let lat_delta = rad_deg(h / EARTH_RADIUS_M);
    let top = rad_deg(w / EARTH_RADIUS_M / deg_rad(lat + lat_delta).cos());
    let bottom = rad_deg(w / EARTH_RADIUS_M / deg_rad(lat - lat_delta).cos());
    let south = lat < 0.0;
    let (lo, hi) = if south { (lon - bottom, lon + bottom) } else { (lon - top, lon + top) };
    [lo, lat - lat_delta, hi, lat + lat_delta]
}

/// The 9 geohash boxes (center first) covering the shape; zeroed boxes
/// are skipped.
fn search_areas(s: &Shape) -> [Bits; 9] {
    let [min_lon, min_lat, max_lon, max_lat] = bounding_box(s);
    let [lon, lat] = s.xy;
    let radius_m = match s.kind {
        Kind::Radius(r) => r,
        Kind::Rect { width, height } => ((width / 2.0) * (width / 2.0) + (height / 2.0) * (height / 2.0)).sqrt(),
    } * s.conversion;
    let mut steps = estimate_steps(radius_m, lat);
    let mut h = encode(WGS84_LON, WGS84_LAT, lon, lat, steps).unwrap_or_default();
    let mut nb = boxes(h);
    let dec = |b: Bits| decode(WGS84_LON, WGS84_LAT, b);
    let mut area = dec(h);
    let mut decrease = false;
    if let Some(a) = dec(nb[N]) {
        decrease |= a.lat.max < max_lat;
    }
    if let Some(a) = dec(nb[S]) {
        decrease |= a.lat.min > min_lat;
    }
    if let Some(a) = dec(nb[E]) {
        decrease |= a.lon.max < max_lon;
    }
    if let Some(a) = dec(nb[W]) {
        decrease |= a.lon.min > min_lon;
    }
    if steps > 1 && decrease {
        steps -= 1;
        h = encode(WGS84_LON, WGS84_LAT, lon, lat, steps).unwrap_or_default();
        nb = boxes(h);
        area = dec(h);
    }
    if steps >= 2 {
        if let Some(a) = area {
            let zero = Bits::default();
            if a.lat.min < min_lat {
                nb[S] = zero;
                nb[SW] = zero;
                nb[SE] = zero;
            }
            if a.lat.max > max_lat {
                nb[N] = zero;
                nb[NE] = zero;
                nb[NW] = zero;
            }
            if a.lon.min < min_lon {
                nb[W] = zero;
                nb[SW] = zero;
                nb[NW] = zero;
            }
            if a.lon.max > max_lon {
                nb[E] = zero;
                nb[SE] = zero;
                nb[NE] = zero;
            }
        }
    }
    nb[C] = h;
    nb
}

/// Is the point with this score inside the shape? Returns its position and
/// its distance (meters) from the center.
fn within(s: &Shape, score: f64) -> Option<([f64; 2], f64)> {
    let xy = decode_score(score);
    match s.kind {
        Kind::Radius(r) => {
            let d = distance(s.xy[0], s.xy[1], xy[0], xy[1]);
            if d > r * s.conversion {
                return None;
            }
            Some((xy, d))
        }
        Kind::Rect { width, height } => {
            let (wm, hm) = (width * s.conversion, height * s.conversion);
            if lat_distance(xy[1], s.xy[1]) > hm / 2.0 {
                return None;
            }
            if distance(xy[0], xy[1], s.xy[0], xy[1]) > wm / 2.0 {
                return None;
            }
            Some((xy, distance(s.xy[0], s.xy[1], xy[0], xy[1])))
        }
    }
}

struct Point {
    lon: f64,
    lat: f64,
    dist: f64,
    score: f64,
    member: SmallBytes,
}

/// Scan the 9 boxes like Redis's membersOfAllNeighbors; `limit` 0 = all.
fn collect(z: &ZSet, areas: &[Bits; 9], s: &Shape, limit: u64) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::new();
    let full = |out: &Vec<Point>| limit != 0 && !out.is_empty() && out.len() as u64 >= limit;
    let mut last = 0usize;
    for i in 0..areas.len() {
        let b = areas[i];
        if b.is_zero() {
            continue;
        }
        if last != 0 && b == areas[last] {
            continue;
        }
        if full(&out) {
            break;
        }
        let min = align52(b) as f64;
        let max = align52(Bits { bits: b.bits.wrapping_add(1), step: b.step }) as f64;
        let range = ScoreRange { min, max, minex: false, maxex: true };
        for k in z.range_by_score(&range, false) {
            if let Some((xy, d)) = within(s, k.score) {
                out.push(Point { lon: xy[0], lat: xy[1], dist: d, score: k.score, member: k.member.clone() });
            }
            if full(&out) {
                break;
            }
        }
        last = i;
    }
    out
}

// ------------------------------------------------------------- formatting

/// Redis's addReplyHumanLongDouble text: `%.17Lf` without trailing zeros.
fn human(v: f64) -> String {
    let mut s = format!("{v:.17}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".into();
    }
    s
}

fn reply_human(cx: &mut Cx, v: f64) {
    let s = human(v);
    if cx.out.resp3 {
        cx.out.raw(format!(",{s}\r\n").as_bytes());
    } else {
        cx.out.bulk(s.as_bytes());
    }
}

/// Redis's fixedpoint_d2string(d, 4): round half to even, 4 decimals.
fn fmt_dist(d: f64) -> String {
    if d == 0.0 {
        return "0.0000".into();
    }
    let r = (d * 10000.0).round_ties_even();
    // llrint gives LLONG_MIN for anything it cannot represent.
    const TWO63: f64 = 9_223_372_036_854_775_808.0;
    let sv: i64 = if (-TWO63..TWO63).contains(&r) { r as i64 } else { i64::MIN };
    let neg = sv < 0;
    let v = sv.unsigned_abs();
    format!("{}{}.{:04}", if neg { "-" } else { "" }, v / 10000, v % 10000)
}

// ---------------------------------------------------------- arg parsing

/// Redis's getDoubleFromObject: strtod over the whole string, no NaN, no
/// overflow to ±inf or underflow to zero.
fn parse_double(b: &[u8]) -> Option<f64> {
    let v = ferrite_resp::num::parse_f64(b)?;
    let s = b.strip_prefix(b"-").or_else(|| b.strip_prefix(b"+")).unwrap_or(b);
    if v.is_infinite() && !s.iter().any(|c| c.eq_ignore_ascii_case(&b'i')) {
        return None;
    }
    if v == 0.0 {
        let (mant, hex): (&[u8], bool) =
            if s.len() > 1 && s[0] == b'0' && (s[1] | 0x20) == b'x' { (&s[2..], true) } else { (s, false) };
        let end =
            mant.iter().position(|&c| if hex { (c | 0x20) == b'p' } else { (c | 0x20) == b'e' }).unwrap_or(mant.len());
        let nonzero =
            mant[..end]
                .iter()
                .any(|&c| if hex { c.is_ascii_hexdigit() && c != b'0' } else { (b'1'..=b'9').contains(&c) });
        if nonzero {
            return None;
        }
    }
    Some(v)
}

fn double_arg(b: &[u8], msg: Option<&'static str>) -> Result<f64, CmdError> {
    parse_double(b).ok_or_else(|| match msg {
        Some(m) => CmdError::err(m),
        None => super::NOT_FLOAT,
    })
}

fn lonlat_args(lon: &[u8], lat: &[u8]) -> Result<[f64; 2], CmdError> {
    let x = double_arg(lon, None)?;
    let y = double_arg(lat, None)?;
    if !(LON_MIN..=LON_MAX).contains(&x) || !(LAT_MIN..=LAT_MAX).contains(&y) {
        return Err(CmdError::err(format!("invalid longitude,latitude pair {x:.6},{y:.6}")));
    }
    Ok([x, y])
}

fn unit_arg(u: &[u8]) -> Result<f64, CmdError> {
    if eq_ic(u, b"m") {
        Ok(1.0)
    } else if eq_ic(u, b"km") {
        Ok(1000.0)
    } else if eq_ic(u, b"ft") {
        Ok(0.3048)
    } else if eq_ic(u, b"mi") {
        Ok(1609.34)
    } else {
        Err(CmdError::err("unsupported unit provided. please use M, KM, FT, MI"))
    }
}

/// `<radius> <unit>` -> (conversion, radius)
fn distance_args(r: &[u8], u: &[u8]) -> Result<(f64, f64), CmdError> {
    let d = double_arg(r, Some("need numeric radius"))?;
    if d < 0.0 {
        return Err(CmdError::err("radius cannot be negative"));
    }
    Ok((unit_arg(u)?, d))
}

/// `<width> <height> <unit>` -> (conversion, width, height)
fn box_args(w: &[u8], h: &[u8], u: &[u8]) -> Result<(f64, f64, f64), CmdError> {
    let w = double_arg(w, Some("need numeric width"))?;
    let h = double_arg(h, Some("need numeric height"))?;
    if h < 0.0 || w < 0.0 {
        return Err(CmdError::err("height or width cannot be negative"));
    }
    Ok((unit_arg(u)?, w, h))
}

/// Does `key` hold a zset? Err(WRONGTYPE) for other types. Counts a
/// keyspace hit or miss like lookupKeyRead.
fn zset_exists(cx: &mut Cx, key: &[u8]) -> Result<bool, CmdError> {
    match cx.ks.lookup_read(key)? {
        None => Ok(false),
        Some(e) => match &e.value {
            Value::ZSet(_) => Ok(true),
            _ => Err(WRONGTYPE),
        },
    }
}

fn member_score(cx: &mut Cx, key: &[u8], m: &[u8]) -> Result<Option<f64>, CmdError> {
    Ok(cx.ks.zset(key)?.and_then(|z| z.score(m)))
}

// ---------------------------------------------------------------- GEOADD

fn geoadd(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let (mut nx, mut xx, mut ch) = (false, false, false);
    let mut i = 2;
    while i < cx.argc() {
        let a = cx.arg(i);
        if eq_ic(a, b"nx") {
            nx = true;
        } else if eq_ic(a, b"xx") {
            xx = true;
        } else if eq_ic(a, b"ch") {
            ch = true;
        } else {
            break;
        }
        i += 1;
    }
    let rest = cx.argc() - i;
    if !rest.is_multiple_of(3) || (nx && xx) {
        return Err(SYNTAX);
    }
    let mut items: Vec<(f64, &[u8])> = Vec::with_capacity(rest / 3);
    for j in (i..cx.argc()).step_by(3) {
        let xy = lonlat_args(cx.arg(j), cx.arg(j + 1))?;
        let h = encode(WGS84_LON, WGS84_LAT, xy[0], xy[1], STEP_MAX).unwrap_or_default();
        items.push((align52(h) as f64, cx.arg(j + 2)));
    }
    // From here on ZADD does the work (its own syntax check included).
    if items.is_empty() {
        return Err(SYNTAX);
    }
    let me = cx.srv.tun.zset_max_listpack_entries.load(Ordering::Relaxed);
    let mv = cx.srv.tun.zset_max_listpack_value.load(Ordering::Relaxed);
    let exists = match cx.ks.lookup(key)? {
        None => false,
        Some(e) => match &e.value {
            Value::ZSet(_) => true,
            _ => return Err(WRONGTYPE),
        },
    };
    if !exists && xx {
        cx.out.int(0);
        return Ok(());
    }
    let z = cx.ks.zset_or_create(key)?;
    let (mut added, mut updated) = (0i64, 0i64);
    for &(score, m) in &items {
        match z.score(m) {
            Some(cur) => {
                if nx {
                    continue;
                }
                if cur != score {
                    z.set_score(m, score, me, mv);
                    updated += 1;
                }
            }
            None => {
                if xx {
                    continue;
                }
                z.set_score(m, score, me, mv);
                added += 1;
            }
        }
    }
    if added + updated > 0 {
        cx.ks.modified(key);
        cx.ks.notify(crate::notify::ZSET, "zadd", key);
    }
    cx.ks.remove_if_empty(key)?;
    cx.out.int(if ch { added + updated } else { added });
    Ok(())
}

// ------------------------------------------------- GEOPOS GEOHASH GEODIST

fn geopos(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let exists = zset_exists(cx, key)?;
    let n = cx.argc() - 2;
    cx.out.array(n);
    for j in 2..cx.argc() {
        let m = cx.arg(j);
        let score = if exists { member_score(cx, key, m)? } else { None };
        match score {
            None => cx.out.null_array(),
            Some(s) => {
                let xy = decode_score(s);
                cx.out.array(2);
                reply_human(cx, xy[0]);
                reply_human(cx, xy[1]);
            }
        }
    }
    Ok(())
}

fn geohash(cx: &mut Cx) -> CmdResult {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let key = cx.arg(1);
    let exists = zset_exists(cx, key)?;
    cx.out.array(cx.argc() - 2);
    for j in 2..cx.argc() {
        let m = cx.arg(j);
        let score = if exists { member_score(cx, key, m)? } else { None };
        match score {
            None => cx.out.null(),
            Some(s) => {
                let xy = decode_score(s);
                let r_lon = Range { min: -180.0, max: 180.0 };
                let r_lat = Range { min: -90.0, max: 90.0 };
                let h = encode(r_lon, r_lat, xy[0], xy[1], 26).unwrap_or_default();
                let mut buf = [b'0'; 11];
                for (i, c) in buf.iter_mut().enumerate().take(10) {
                    let idx = (h.bits >> (52 - (i + 1) * 5)) & 0x1f;
                    *c = ALPHABET[idx as usize];
                }
                cx.out.bulk(&buf);
            }
        }
    }
    Ok(())
}

fn geodist(cx: &mut Cx) -> CmdResult {
    let key = cx.arg(1);
    let mut to_meter = 1.0;
    if cx.argc() == 5 {
        to_meter = unit_arg(cx.arg(4))?;
    } else if cx.argc() > 5 {
        return Err(SYNTAX);
    }
    if !zset_exists(cx, key)? {
        cx.out.null();
        return Ok(());
    }
    let (m1, m2) = (cx.arg(2), cx.arg(3));
    let (Some(s1), Some(s2)) = (member_score(cx, key, m1)?, member_score(cx, key, m2)?) else {
        cx.out.null();
        return Ok(());
    };
    let a = decode_score(s1);
    let b = decode_score(s2);
    let d = distance(a[0], a[1], b[0], b[1]) / to_meter;
    cx.out.bulk(fmt_dist(d).as_bytes());
    Ok(())
}

// ------------------------------------------------------- radius searches

const COORDS: u32 = 1;
const MEMBER: u32 = 2;
const NOSTORE: u32 = 4;
const SEARCH: u32 = 8;
const SEARCHSTORE: u32 = 16;

#[derive(PartialEq, Eq, Clone, Copy)]
enum Sort {
    None,
    Asc,
    Desc,
}

fn georadius(cx: &mut Cx) -> CmdResult {
    search_generic(cx, 1, COORDS)
}

fn georadius_ro(cx: &mut Cx) -> CmdResult {
    search_generic(cx, 1, COORDS | NOSTORE)
}

fn georadiusbymember(cx: &mut Cx) -> CmdResult {
    search_generic(cx, 1, MEMBER)
}

fn georadiusbymember_ro(cx: &mut Cx) -> CmdResult {
    search_generic(cx, 1, MEMBER | NOSTORE)
}

fn geosearch(cx: &mut Cx) -> CmdResult {
    search_generic(cx, 1, SEARCH)
}

fn geosearchstore(cx: &mut Cx) -> CmdResult {
    search_generic(cx, 2, SEARCH | SEARCHSTORE)
}

const NO_MEMBER: &str = "could not decode requested zset member";

fn search_generic(cx: &mut Cx, src_idx: usize, flags: u32) -> CmdResult {
    let src = cx.arg(src_idx);
    let argc = cx.argc();
    let mut storekey: Option<&[u8]> = None;
    let mut storedist = false;
    let exists = zset_exists(cx, src)?;

    let mut shape = Shape { xy: [0.0, 0.0], conversion: 0.0, kind: Kind::Radius(0.0) };
    let base;
    if flags & COORDS != 0 {
        base = 6;
        shape.xy = lonlat_args(cx.arg(2), cx.arg(3))?;
        let (conv, r) = distance_args(cx.arg(4), cx.arg(5))?;
        shape.conversion = conv;
        shape.kind = Kind::Radius(r);
    } else if flags & MEMBER != 0 {
        base = 5;
        if exists {
            let m = cx.arg(2);
            let Some(score) = member_score(cx, src, m)? else {
                return Err(CmdError::err(NO_MEMBER));
            };
            shape.xy = decode_score(score);
            let (conv, r) = distance_args(cx.arg(3), cx.arg(4))?;
            shape.conversion = conv;
            shape.kind = Kind::Radius(r);
        }
    } else {
        base = if flags & SEARCHSTORE != 0 { 3 } else { 2 };
        if flags & SEARCHSTORE != 0 {
            storekey = Some(cx.arg(1));
        }
    }

    let (mut withdist, mut withhash, mut withcoord) = (false, false, false);
    let (mut frommember, mut fromloc, mut byradius, mut bybox) = (false, false, false, false);
    let mut sort = Sort::None;
    let mut any = false;
    let mut count: i64 = 0;
    let search = flags & SEARCH != 0;
    let can_store = flags & NOSTORE == 0 && !search;
    let remaining = argc.saturating_sub(base);
    let mut i = 0;
    while i < remaining {
        let a = cx.arg(base + i);
        let has = |k: usize| i + k < remaining;
        if eq_ic(a, b"withdist") {
            withdist = true;
        } else if eq_ic(a, b"withhash") {
            withhash = true;
        } else if eq_ic(a, b"withcoord") {
            withcoord = true;
        } else if eq_ic(a, b"any") {
            any = true;
        } else if eq_ic(a, b"asc") {
            sort = Sort::Asc;
        } else if eq_ic(a, b"desc") {
            sort = Sort::Desc;
        } else if eq_ic(a, b"count") && has(1) {
            count = parse_int(cx.arg(base + i + 1))?;
            if count <= 0 {
                return Err(CmdError::err("COUNT must be > 0"));
            }
            i += 1;
        } else if eq_ic(a, b"store") && has(1) && can_store {
            storekey = Some(cx.arg(base + i + 1));
            storedist = false;
            i += 1;
        } else if eq_ic(a, b"storedist") && has(1) && can_store {
            storekey = Some(cx.arg(base + i + 1));
            storedist = true;
            i += 1;
        } else if eq_ic(a, b"storedist") && search && flags & SEARCHSTORE != 0 {
            storedist = true;
        } else if eq_ic(a, b"frommember") && has(1) && search && !fromloc {
            if exists {
                let m = cx.arg(base + i + 1);
                let Some(score) = member_score(cx, src, m)? else {
                    return Err(CmdError::err(NO_MEMBER));
                };
                shape.xy = decode_score(score);
            }
            frommember = true;
            i += 1;
        } else if eq_ic(a, b"fromlonlat") && has(2) && search && !frommember {
            shape.xy = lonlat_args(cx.arg(base + i + 1), cx.arg(base + i + 2))?;
            fromloc = true;
            i += 2;
        } else if eq_ic(a, b"byradius") && has(2) && search && !bybox {
            let (conv, r) = distance_args(cx.arg(base + i + 1), cx.arg(base + i + 2))?;
            shape.conversion = conv;
            shape.kind = Kind::Radius(r);
            byradius = true;
            i += 2;
        } else if eq_ic(a, b"bybox") && has(3) && search && !byradius {
            let (conv, w, h) = box_args(cx.arg(base + i + 1), cx.arg(base + i + 2), cx.arg(base + i + 3))?;
            shape.conversion = conv;
            shape.kind = Kind::Rect { width: w, height: h };
            bybox = true;
            i += 3;
        } else {
            return Err(SYNTAX);
        }
        i += 1;
    }

    if storekey.is_some() && (withdist || withhash || withcoord) {
        let who = if flags & SEARCHSTORE != 0 { "GEOSEARCHSTORE" } else { "STORE option in GEORADIUS" };
        return Err(CmdError::err(format!("{who} is not compatible with WITHDIST, WITHHASH and WITHCOORD options")));
    }
    if search && !(frommember || fromloc) {
        let name = String::from_utf8_lossy(cx.arg(0)).into_owned();
        return Err(CmdError::err(format!("exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}")));
    }
    if search && !(byradius || bybox) {
        let name = String::from_utf8_lossy(cx.arg(0)).into_owned();
        return Err(CmdError::err(format!("exactly one of BYRADIUS and BYBOX can be specified for {name}")));
    }
    if any && count == 0 {
        return Err(CmdError::err("the ANY argument requires COUNT argument"));
    }

    let event = if search { "geosearchstore" } else { "georadiusstore" };
    if !exists {
        match storekey {
            Some(dst) => {
                if cx.ks.remove(dst)?.is_some() {
                    cx.ks.notify(crate::notify::GENERIC, "del", dst);
                }
                cx.out.int(0);
            }
            None => cx.out.array(0),
        }
        return Ok(());
    }

    if count != 0 && sort == Sort::None && !any {
        sort = Sort::Asc;
    }
    let areas = search_areas(&shape);
    let mut points = match cx.ks.zset(src)? {
        Some(z) => collect(z, &areas, &shape, if any { count as u64 } else { 0 }),
        None => Vec::new(),
    };
    if points.is_empty() && storekey.is_none() {
        cx.out.array(0);
        return Ok(());
    }
    let len = points.len();
    let returned = if count == 0 || (len as u64) < count as u64 { len } else { count as usize };
    if sort != Sort::None {
        let asc = |a: &Point, b: &Point| -> i32 {
            if a.dist > b.dist {
                1
            } else if a.dist == b.dist {
                0
            } else {
                -1
            }
        };
        let desc = |a: &Point, b: &Point| -> i32 { -asc(a, b) };
        let cmp: &dyn Fn(&Point, &Point) -> i32 = if sort == Sort::Asc { &asc } else { &desc };
        if returned == len {
            points.sort_by(|a, b| cmp(a, b).cmp(&0));
        } else {
            crate::pqsort::partial_qsort(&mut points, 0, returned as i64 - 1, &mut |a, b| cmp(a, b).cmp(&0));
        }
    }
    points.truncate(returned);

    match storekey {
        None => {
            let opts = withdist as usize + withhash as usize + withcoord as usize;
            cx.out.array(points.len());
            for p in &points {
                if opts > 0 {
                    cx.out.array(opts + 1);
                }
                cx.out.bulk(&p.member);
                if withdist {
                    cx.out.bulk(fmt_dist(p.dist / shape.conversion).as_bytes());
                }
                if withhash {
                    cx.out.int(p.score as i64);
                }
                if withcoord {
                    cx.out.array(2);
                    reply_human(cx, p.lon);
                    reply_human(cx, p.lat);
                }
            }
        }
        Some(dst) => {
            let n = points.len();
            if n > 0 {
                let me = cx.srv.tun.zset_max_listpack_entries.load(Ordering::Relaxed);
                let mv = cx.srv.tun.zset_max_listpack_value.load(Ordering::Relaxed);
                let conv = shape.conversion;
                let mut seen = std::collections::HashSet::new();
                let pairs: Vec<(SmallBytes, f64)> = points
                    .into_iter()
                    .filter(|p| seen.insert(p.member.clone()))
                    .map(|p| {
                        let s = if storedist { p.dist / conv } else { p.score };
                        (p.member, s)
                    })
                    .collect();
                let z = ZSet::from_pairs(pairs, me, mv);
                cx.ks.insert(dst, Value::ZSet(Box::new(z)), 0)?;
                cx.ks.notify(crate::notify::ZSET, event, dst);
            } else if cx.ks.remove(dst)?.is_some() {
                cx.ks.notify(crate::notify::GENERIC, "del", dst);
            }
            cx.out.int(n as i64);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_roundtrip() {
        for &(a, b) in &[(0u32, 0u32), (1, 0), (0, 1), (0x3ff_ffff, 0x155_5555), (u32::MAX, 7)] {
            let v = interleave64(a, b);
            let d = deinterleave64(v);
            assert_eq!(d as u32, a);
            assert_eq!((d >> 32) as u32, b);
        }
    }

    #[test]
    fn dist_format() {
        assert_eq!(fmt_dist(0.0), "0.0000");
        assert_eq!(fmt_dist(166274.15156960033), "166274.1516");
        assert_eq!(fmt_dist(0.00004), "0.0000");
        assert_eq!(fmt_dist(1.5), "1.5000");
    }

    #[test]
    fn human_format() {
        assert_eq!(human(13.361389338970184), "13.36138933897018433");
        assert_eq!(human(0.0), "0");
        assert_eq!(human(-0.0), "0");
        assert_eq!(human(2.5), "2.5");
    }
}
