//! LOLWUT [VERSION v] [args...], as in Redis 7.0: version 5 draws Georg
//! Nees's "Schotter" in braille characters, version 6 a skyline with ANSI
//! colours, every other version (the default, 7) prints just the version
//! line. The drawings are random like Redis's (only the first two rows of
//! Schotter are fixed), so only their shape can be compared with Redis.

use super::{CmdError, CmdResult, Cx};
use rand::Rng;

const VERSION: &str = crate::cmd::info::REDIS_VERSION;

/// C's `rand()`: 0..=RAND_MAX (2^31-1).
fn crand(rng: &mut impl Rng) -> i32 {
    rng.gen_range(0..=i32::MAX)
}

fn long_arg(cx: &Cx, i: usize) -> Result<i64, CmdError> {
    ferrite_resp::num::parse_i64(cx.arg(i)).ok_or_else(|| CmdError::err("value is not an integer or out of range"))
}

pub fn lolwut(cx: &mut Cx) -> CmdResult {
    // Which drawing, and the index of its first argument.
    let mut version: Option<u32> = None;
    let mut first = 1;
    if cx.argc() >= 3 && super::eq_ic(cx.arg(1), b"version") {
        // Redis keeps the low 32 bits (an unsigned int) of the number.
        version = Some(long_arg(cx, 2)? as u32);
        first = 3;
    }
    let args: Vec<usize> = (first..cx.argc()).collect();
    let text = match version {
        Some(5) => schotter(cx, &args)?,
        Some(6) => skyline(cx, &args)?,
        _ => format!("Redis ver. {VERSION}\n").into_bytes(),
    };
    cx.out.verbatim(b"txt", &text);
    Ok(())
}

/// Parse up to `defaults.len()` optional integer arguments, clamped to
/// `lo..=hi` each, like Redis.
fn opts<const N: usize>(cx: &Cx, args: &[usize], mut v: [i64; N], lims: [(i64, i64); N]) -> Result<[i64; N], CmdError> {
    for (k, &i) in args.iter().take(N).enumerate() {
        v[k] = long_arg(cx, i)?;
    }
    for k in 0..N {
        v[k] = v[k].clamp(lims[k].0, lims[k].1);
    }
    Ok(v)
}

/// A one-bit-per-pixel canvas (Schotter can be 2000 x 399204 pixels).
struct Bits {
    w: i64,
    h: i64,
    bits: Vec<u64>,
}

impl Bits {
    fn new(w: i64, h: i64) -> Bits {
        let n = (w.max(0) * h.max(0)) as usize;
        Bits { w, h, bits: vec![0; n.div_ceil(64)] }
    }
    fn set(&mut self, x: i64, y: i64) {
        if x < 0 || x >= self.w || y < 0 || y >= self.h {
            return;
        }
        let i = (x + y * self.w) as usize;
        self.bits[i / 64] |= 1 << (i % 64);
    }
    fn get(&self, x: i64, y: i64) -> bool {
        if x < 0 || x >= self.w || y < 0 || y >= self.h {
            return false;
        }
        let i = (x + y * self.w) as usize;
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }
    /// Bresenham line.
    fn line(&mut self, mut x1: i64, mut y1: i64, x2: i64, y2: i64) {
        let (dx, dy) = ((x2 - x1).abs(), (y2 - y1).abs());
        let sx = if x1 < x2 { 1 } else { -1 };
        let sy = if y1 < y2 { 1 } else { -1 };
        let mut err = dx - dy;
        loop {
            self.set(x1, y1);
            if x1 == x2 && y1 == y2 {
                break;
            }
            let e2 = err * 2;
            if e2 > -dy {
                err -= dy;
                x1 += sx;
            }
            if e2 < dx {
                err += dx;
                y1 += sy;
            }
        }
    }
    /// A square centred on x,y with the given side, rotated by `angle`:
    /// its corners are on the circle through them, starting at 45 degrees.
    /// Float/double steps follow Redis so the fixed rows come out the same.
    fn square(&mut self, x: i32, y: i32, side: f32, angle: f32) {
        // Redis divides by this truncated sqrt(2); the exact constant can
        // round some sizes differently.
        #[allow(clippy::approx_constant)]
        const ROOT2: f64 = 1.4142135623;
        let size = ((side as f64 / ROOT2) as f32 as f64).round() as f32;
        let mut k = (std::f64::consts::FRAC_PI_4 + angle as f64) as f32;
        let mut px = [0i64; 4];
        let mut py = [0i64; 4];
        for j in 0..4 {
            px[j] = ((k as f64).sin() * size as f64 + x as f64).round() as i64;
            py[j] = ((k as f64).cos() * size as f64 + y as f64).round() as i64;
            k = (k as f64 + std::f64::consts::FRAC_PI_2) as f32;
        }
        for j in 0..4 {
            self.line(px[j], py[j], px[(j + 1) % 4], py[(j + 1) % 4]);
        }
    }
}

fn schotter(cx: &Cx, args: &[usize]) -> Result<Vec<u8>, CmdError> {
    let [cols, per_row, per_col] = opts(cx, args, [66, 8, 12], [(1, 1000), (1, 200), (1, 200)])?;
    let width = cols * 2;
    let padding: i64 = if width > 4 { 2 } else { 0 };
    let side = (width - padding * 2) as f32 / per_row as f32;
    let height = (side * per_col as f32 + (padding * 2) as f32) as i64;
    let mut c = Bits::new(width, height);
    let mut rng = rand::thread_rng();
    let pad = padding as f32;
    for y in 0..per_col {
        for x in 0..per_row {
            let mut sx = (x as f32 * side + side / 2.0 + pad) as i32;
            let mut sy = (y as f32 * side + side / 2.0 + pad) as i32;
            let mut angle = 0f32;
            if y > 1 {
                let mut r = [0f32; 3];
                for v in r.iter_mut() {
                    *v = crand(&mut rng) as f32 / i32::MAX as f32 / per_col as f32 * y as f32;
                }
                for v in r.iter_mut() {
                    if crand(&mut rng) % 2 == 1 {
                        *v = -*v;
                    }
                }
                angle = r[0];
                sx = (sx as f32 + r[1] * side / 3.0) as i32;
                sy = (sy as f32 + r[2] * side / 3.0) as i32;
            }
            c.square(sx, sy, side, angle);
        }
    }
    // Braille: each character shows a 2x4 block of pixels.
    let mut out = Vec::new();
    let mut y = 0;
    while y < c.h {
        let mut x = 0;
        while x < c.w {
            let dots = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (0, 3), (1, 3)];
            let mut byte = 0u32;
            for (bit, (dx, dy)) in dots.iter().enumerate() {
                if c.get(x + dx, y + dy) {
                    byte |= 1 << bit;
                }
            }
            let code = 0x2800 + byte;
            out.extend_from_slice(&[
                (0xE0 | (code >> 12)) as u8,
                (0x80 | ((code >> 6) & 0x3F)) as u8,
                (0x80 | (code & 0x3F)) as u8,
            ]);
            x += 2;
        }
        if y != c.h - 1 {
            out.push(b'\n');
        }
        y += 4;
    }
    out.extend_from_slice(
        format!("\nGeorg Nees - schotter, plotter on paper, 1968. Redis ver. {VERSION}\n").as_bytes(),
    );
    Ok(out)
}

/// One building of the skyline: x offset, width, height, windows?, colour.
struct Building {
    xoff: i64,
    width: i64,
    height: i64,
    windows: bool,
    color: u8,
}

struct Canvas {
    w: i64,
    h: i64,
    px: Vec<u8>,
}

impl Canvas {
    fn get(&self, x: i64, y: i64) -> u8 {
        if x < 0 || x >= self.w || y < 0 || y >= self.h {
            return 0;
        }
        self.px[(x + y * self.w) as usize]
    }
    fn set(&mut self, x: i64, y: i64, c: u8) {
        if x < 0 || x >= self.w || y < 0 || y >= self.h {
            return;
        }
        self.px[(x + y * self.w) as usize] = c;
    }
    fn building(&mut self, b: &Building, rng: &mut impl Rng) {
        let start = self.h - 1;
        let end = start - b.height + 1;
        let mut y = start;
        while y >= end {
            for x in b.xoff..b.xoff + b.width {
                // The roof is four pixels narrower.
                if y == end && (x <= b.xoff + 1 || x >= b.xoff + b.width - 2) {
                    continue;
                }
                let mut color = b.color;
                if b.windows && x > b.xoff + 1 && x < b.xoff + b.width - 2 && y > end + 1 && y < start - 1 {
                    let relx = x - (b.xoff + 1);
                    let rely = y - (end + 1);
                    // Windows are two pixels wide and one tall.
                    if (relx / 2) % 2 != 0 && rely % 2 != 0 {
                        loop {
                            color = 1 + (crand(rng) % 2) as u8;
                            if color != b.color {
                                break;
                            }
                        }
                        if relx % 2 != 0 {
                            color = self.get(x - 1, y);
                        }
                    }
                }
                self.set(x, y, color);
            }
            y -= 1;
        }
    }
}

fn skyline(cx: &Cx, args: &[usize]) -> Result<Vec<u8>, CmdError> {
    let [cols, rows] = opts(cx, args, [80, 20], [(1, 1000), (1, 1000)])?;
    let mut c = Canvas { w: cols, h: rows, px: vec![3; (cols * rows) as usize] };
    let mut rng = rand::thread_rng();
    let r = |rng: &mut rand::rngs::ThreadRng| crand(rng) as i64;
    // Background buildings without windows, the lighter grey behind.
    for color in [2u8, 1] {
        let mut offset = -10i64;
        while offset < c.w {
            offset += r(&mut rng) % 8;
            let width = 10 + r(&mut rng) % 9;
            let height = if color == 2 { c.h / 2 + (r(&mut rng) % c.h) / 2 } else { c.h / 2 + (r(&mut rng) % c.h) / 3 };
            let b = Building { xoff: offset, width, height, windows: false, color };
            c.building(&b, &mut rng);
            offset += if color == 2 { width / 2 } else { width + 1 };
        }
    }
    // Foreground buildings with windows.
    let mut offset = -10i64;
    while offset < c.w {
        offset += r(&mut rng) % 8;
        let mut width = 5 + r(&mut rng) % 14;
        if width % 4 != 0 {
            width += width % 3;
        }
        let height = c.h / 3 + (r(&mut rng) % c.h) / 2;
        let b = Building { xoff: offset, width, height, windows: true, color: 0 };
        c.building(&b, &mut rng);
        offset += width + 5;
    }
    let mut out = Vec::new();
    for y in 0..c.h {
        for x in 0..c.w {
            let esc: &[u8] = match c.get(x, y) {
                1 => b"0;90;100m",
                2 => b"0;37;47m",
                3 => b"0;97;107m",
                _ => b"0;30;40m",
            };
            out.extend_from_slice(b"\x1b[");
            out.extend_from_slice(esc);
            out.extend_from_slice(b" \x1b[0m");
        }
        if y != c.h - 1 {
            out.push(b'\n');
        }
    }
    out.extend_from_slice(
        format!(
            "\nDedicated to the 8 bit game developers of past and present.\nOriginal 8 bit image from Plaguemon by hikikomori. Redis ver. {VERSION}\n"
        )
        .as_bytes(),
    );
    Ok(out)
}
