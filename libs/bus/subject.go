package bus

// ProviderSubjectPrefix starts the per-component work subjects: the router sends a
// component's requests to ProviderSubjectPrefix + component, its workers serve them in
// the queue group of the same name, and libs/natsauth grants exactly those subjects.
const ProviderSubjectPrefix = "parley.provider."

// LimitsBucket is the JetStream key-value bucket of the routers' shared rate limits and
// token budgets; libs/natsauth grants it to the router alone.
const LimitsBucket = "parley_limits"

// WorkerSubjectPrefix starts the per-component presence subjects: a worker announces
// itself to PresenceSubject(component) for each component it serves, routers listen on
// WorkerSubjectPrefix + "*", and libs/natsauth grants exactly those subjects.
const WorkerSubjectPrefix = "parley.workers."

// PresenceSubject is the presence subject of component.
func PresenceSubject(component string) string { return WorkerSubjectPrefix + component }
