package collectorconfig

import "testing"

// BenchmarkParseShape parses the effective config a real supervisor reports, once per collector that
// connects or applies a config.
func BenchmarkParseShape(b *testing.B) {
	config := readFixture(&testing.T{}, "effective-merged.yaml")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseShape(config); err != nil {
			b.Fatal(err)
		}
	}
}
