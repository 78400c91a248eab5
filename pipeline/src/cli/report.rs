//! The summary a run prints.

use std::io::Write;

use footfall_pipeline::runtime::Summary;

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn print_summary(s: &Summary, w: &mut impl Write) -> std::io::Result<()> {
    let st = &s.stats;
    let secs = s.elapsed.as_secs_f64();
    let total = st.total_read();
    writeln!(
        w,
        "  read        {} events in {:.2} s ({} events/s)",
        thousands(total),
        secs,
        thousands((total as f64 / secs.max(1e-9)) as u64)
    )?;
    let per_topic: Vec<String> = st
        .read_by_topic()
        .iter()
        .map(|(t, n)| format!("{t} {}", thousands(*n)))
        .collect();
    if !per_topic.is_empty() {
        writeln!(w, "              {}", per_topic.join(" · "))?;
    }
    let reasons: Vec<String> = st
        .deadletter_reasons()
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    writeln!(
        w,
        "  deadletter  {} records{}",
        thousands(st.deadlettered()),
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        }
    )?;
    writeln!(
        w,
        "  duplicates  {} redelivered records applied once",
        thousands(st.duplicates())
    )?;
    writeln!(
        w,
        "  late        {} events older than the clock on arrival",
        thousands(st.late_events())
    )?;
    let actions = st.actions_by_trigger();
    if actions.is_empty() {
        writeln!(w, "  actions     none")?;
    }
    for ((trigger, group), n) in &actions {
        writeln!(
            w,
            "  actions     {trigger} ({}): {}",
            group.as_str(),
            thousands(*n)
        )?;
    }
    let mut suppressed: std::collections::BTreeMap<&str, (u64, Vec<String>)> = Default::default();
    for ((trigger, reason), n) in st.suppressed_by_reason() {
        let e = suppressed.entry(reason).or_default();
        e.0 += n;
        e.1.push(format!("{trigger} {}", thousands(n)));
    }
    for (reason, (n, per)) in &suppressed {
        writeln!(
            w,
            "  suppressed  {reason}: {} ({})",
            thousands(*n),
            per.join(", ")
        )?;
    }
    writeln!(w, "  clock       {} at the end", s.clock)?;
    if let Some((id, took)) = s.resumed {
        writeln!(
            w,
            "  resumed     from checkpoint {id}, {:.2} s from start to ready",
            took.as_secs_f64()
        )?;
    }
    let c = st.checkpoints();
    if c.count > 0 {
        writeln!(
            w,
            "  checkpoints {} written (longest {:.2} s, longest pause {:.1} ms, last {:.1} MiB)",
            c.count,
            c.max_us as f64 / 1e6,
            c.max_stall_us as f64 / 1e3,
            c.last_bytes as f64 / 1048576.0
        )?;
    }
    if s.beyond_until > 0 {
        writeln!(
            w,
            "  not applied {} events after --until",
            thousands(s.beyond_until)
        )?;
    }
    Ok(())
}
