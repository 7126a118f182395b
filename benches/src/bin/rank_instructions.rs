//! Ranks the `report_rank` bench's history (10,000 sites x 600 points) a given number of
//! times, without or with live bytes by age, for callgrind to count: the difference
//! between two counts is the instructions of the extra ranks, whatever the machine's
//! load.
//!
//! ```sh
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/rank_instructions aged 2
//! ```
use leakwatch_benches::rank_series::{series, with_ages};
use leakwatch_report::{RankOptions, Verdict, rank};
use std::hint::black_box;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (aged, ranks) = match args.as_slice() {
        [kind, ranks] if kind == "plain" || kind == "aged" => match ranks.parse::<u32>() {
            Ok(ranks) => (kind == "aged", ranks),
            Err(_) => return usage(),
        },
        _ => return usage(),
    };
    let s = series(10_000, 600);
    let s = if aged { with_ages(s) } else { s };
    let options = RankOptions::default();
    let mut leaks = 0;
    for _ in 0..ranks {
        let ranking = rank(black_box(&s), &options);
        leaks = ranking
            .sites
            .iter()
            .filter(|t| t.verdict == Verdict::Leak)
            .count();
    }
    println!("{ranks} ranks, {leaks} leaks");
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("usage: rank_instructions plain|aged RANKS");
    ExitCode::from(2)
}
