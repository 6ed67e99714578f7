//! TEMP STUB
#![allow(missing_docs, dead_code, unused)]
use super::{FourTuple, Seq};
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieOptions { pub mss: u16, pub window_scale: Option<u8>, pub sack_permitted: bool }
pub struct Secrets;
impl Secrets {
  pub fn random() -> Self { Secrets }
  pub fn random_key() -> [u8; 32] { [1; 32] }
  pub fn from_key(key: [u8; 32]) -> Self { Secrets }
  pub fn initial_sequence(&self, tuple: &FourTuple, now_ns: u64) -> Seq { Seq(now_ns as u32) }
  pub fn syn_cookie(&self, tuple: &FourTuple, peer_isn: Seq, now_ns: u64, options: CookieOptions) -> Seq { Seq(0) }
  pub fn check_cookie(&self, tuple: &FourTuple, peer_isn: Seq, cookie: Seq, now_ns: u64) -> Option<CookieOptions> { None }
}
