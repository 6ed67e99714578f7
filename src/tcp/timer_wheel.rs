//! TEMP STUB
#![allow(missing_docs, dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u32,
}
pub struct TimerWheel<T: Copy> {
    items: Vec<Option<(u64, T)>>,
}
impl<T: Copy> TimerWheel<T> {
    pub fn new(_now_ns: u64, _tick_ns: u64) -> Self {
        TimerWheel { items: Vec::new() }
    }
    pub fn insert(&mut self, deadline_ns: u64, item: T) -> TimerId {
        self.items.push(Some((deadline_ns, item)));
        TimerId {
            index: self.items.len() as u32 - 1,
            generation: 0,
        }
    }
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        self.items[id.index as usize].take().map(|x| x.1)
    }
    pub fn advance(&mut self, now_ns: u64, fired: &mut Vec<T>) {
        for s in &mut self.items {
            if s.is_some_and(|x| x.0 <= now_ns) {
                fired.push(s.take().unwrap().1)
            }
        }
    }
}
