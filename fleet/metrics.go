package fleet

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collectors returns the fleet's metrics, read when scraped:
//
//	switchyard_fleet_generation           the committed intent's generation this replica saw
//	switchyard_fleet_applied_generation   the generation this replica serves
//	switchyard_fleet_api_contact_age_seconds  since a call to the API server last succeeded
//	switchyard_fleet_live_replicas        replicas that renewed their Lease within member_timeout, this one included
//	switchyard_fleet_agree                1 when every live replica serves the fleet's generation
func (f *Fleet) Collectors() []prometheus.Collector {
	gauge := func(name, help string, fn func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn)
	}
	return []prometheus.Collector{
		gauge("switchyard_fleet_generation", "Generation of the fleet's committed routing intent as this replica last saw it.",
			func() float64 { return float64(f.Generation()) }),
		gauge("switchyard_fleet_applied_generation", "Generation of the fleet's routing intent this replica serves.",
			func() float64 { return float64(f.applied.Load().generation) }),
		gauge("switchyard_fleet_api_contact_age_seconds", "Seconds since a call to the Kubernetes API server last succeeded.",
			func() float64 { return f.contactAge(f.now()).Seconds() }),
		gauge("switchyard_fleet_live_replicas", "Replicas whose Lease was renewed within fleet.member_timeout, this one included.",
			func() float64 { return float64(len(f.liveMembers(f.now())) + 1) }),
		gauge("switchyard_fleet_agree", "1 when every live replica serves the fleet's generation, else 0.", func() float64 {
			if f.Status().Agree {
				return 1
			}
			return 0
		}),
	}
}
