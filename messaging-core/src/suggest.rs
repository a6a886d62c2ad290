//! Did-you-mean suggestions for misspelled names (options, config keys, methods): a leaf
//! module, so that errors and option checks can both use it without importing each other.

/// The name among `known` that `given` is most likely a typo of: at most two edits away
/// (a swap of neighbours counts as one), and not `given` itself.
///
/// ```
/// let known = ["amqp_durable_queues", "amqp_auto_delete"];
/// assert_eq!(messaging_core::options::closest("amqp_durable_queue", known), Some("amqp_durable_queues"));
/// assert_eq!(messaging_core::options::closest("durable", known), None);
/// ```
pub fn closest<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|name| (strsim::osa_distance(given, name), name))
        .filter(|(distance, _)| (1..=2).contains(distance))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}
