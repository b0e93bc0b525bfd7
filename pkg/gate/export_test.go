package gate

// Stats gives the package's external tests the store's counters, which
// production reads through the defender_gate_memory_* metrics.
func (s *MemoryStore) Stats() memoryStats { return s.stats() }
