package model

// SetLR changes the schedule's peak and floor learning rates, for a live
// configuration reload; the schedule's shape and position are kept.
func (t *Trainer) SetLR(peak, minLR float64) {
	t.opt.Schedule.PeakLR, t.opt.Schedule.MinLR = peak, minLR
}
