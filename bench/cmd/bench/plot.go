package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"slices"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// The plot is drawn with the standard library and basicfont alone: two
// scatter panels with axes need a few dozen lines of drawing, not a
// plotting library and its dependency tree. basicfont is ASCII plus a few
// symbols, so labels say "us", not "µs".

var (
	colBlue   = color.RGBA{30, 100, 220, 255}
	colGreen  = color.RGBA{20, 150, 60, 255}
	colFail   = color.RGBA{220, 30, 30, 255}
	colSwitch = color.RGBA{150, 150, 150, 255}
	colGrid   = color.RGBA{232, 232, 232, 255}
	colAxis   = color.RGBA{40, 40, 40, 255}
	colP50    = color.RGBA{40, 40, 40, 255}
	colP99    = color.RGBA{230, 110, 0, 255}
	colFaint  = color.RGBA{190, 190, 190, 255}
)

type canvas struct{ img *image.RGBA }

func newCanvas(w, h int) *canvas {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	return &canvas{img: img}
}

func (c *canvas) set(x, y int, col color.Color) {
	if image.Pt(x, y).In(c.img.Rect) {
		c.img.Set(x, y, col)
	}
}

// line draws with Bresenham's algorithm.
func (c *canvas) line(x0, y0, x1, y1 int, col color.Color) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		c.set(x0, y0, col)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

func (c *canvas) dot(x, y, r int, col color.Color) {
	for i := -r; i <= r; i++ {
		for j := -r; j <= r; j++ {
			if i*i+j*j <= r*r+r {
				c.set(x+i, y+j, col)
			}
		}
	}
}

func (c *canvas) rect(r image.Rectangle, col color.Color) {
	draw.Draw(c.img, r, image.NewUniform(col), image.Point{}, draw.Src)
}

// text draws s with its baseline at y, anchored by align: 0 left, 1
// centre, 2 right.
func (c *canvas) text(x, y int, s string, col color.Color, align int) {
	face := basicfont.Face7x13
	d := font.Drawer{Dst: c.img, Src: image.NewUniform(col), Face: face}
	w := d.MeasureString(s).Round()
	x -= w * align / 2
	d.Dot = fixed.P(x, y)
	d.DrawString(s)
}

// vtext draws s rotated a quarter turn counter-clockwise, centred on
// (x, y): the y-axis label.
func (c *canvas) vtext(x, y int, s string, col color.Color) {
	face := basicfont.Face7x13
	w := font.MeasureString(face, s).Round()
	tmp := image.NewRGBA(image.Rect(0, 0, w, 13))
	d := font.Drawer{Dst: tmp, Src: image.NewUniform(col), Face: face, Dot: fixed.P(0, 10)}
	d.DrawString(s)
	for i := 0; i < w; i++ {
		for j := 0; j < 13; j++ {
			if _, _, _, a := tmp.At(i, j).RGBA(); a > 0 {
				c.set(x-6+j, y+w/2-i, tmp.At(i, j))
			}
		}
	}
}

// panel maps data coordinates into a rectangle of the canvas.
type panel struct {
	c          *canvas
	r          image.Rectangle
	x0, x1     float64
	y0, y1     float64
	xlab, ylab string
}

func (p *panel) px(x float64) int {
	return p.r.Min.X + int(math.Round((x-p.x0)/(p.x1-p.x0)*float64(p.r.Dx())))
}

func (p *panel) py(y float64) int {
	y = math.Min(math.Max(y, p.y0), p.y1)
	return p.r.Max.Y - int(math.Round((y-p.y0)/(p.y1-p.y0)*float64(p.r.Dy())))
}

// axes draws grid, frame, ticks and labels.
func (p *panel) axes(title string) {
	c := p.c
	xs := niceStep((p.x1 - p.x0) / 10)
	ys := niceStep((p.y1 - p.y0) / 6)
	for v := math.Ceil(p.x0/xs) * xs; v <= p.x1+xs/1e6; v += xs {
		x := p.px(v)
		c.line(x, p.r.Min.Y, x, p.r.Max.Y, colGrid)
		c.line(x, p.r.Max.Y, x, p.r.Max.Y+4, colAxis)
		c.text(x, p.r.Max.Y+17, trimFloat(v), colAxis, 1)
	}
	for v := math.Ceil(p.y0/ys) * ys; v <= p.y1+ys/1e6; v += ys {
		y := p.py(v)
		c.line(p.r.Min.X, y, p.r.Max.X, y, colGrid)
		c.line(p.r.Min.X-4, y, p.r.Min.X, y, colAxis)
		c.text(p.r.Min.X-7, y+4, trimFloat(v), colAxis, 2)
	}
	c.line(p.r.Min.X, p.r.Min.Y, p.r.Min.X, p.r.Max.Y, colAxis)
	c.line(p.r.Min.X, p.r.Max.Y, p.r.Max.X, p.r.Max.Y, colAxis)
	c.line(p.r.Max.X, p.r.Min.Y, p.r.Max.X, p.r.Max.Y, colAxis)
	c.line(p.r.Min.X, p.r.Min.Y, p.r.Max.X, p.r.Min.Y, colAxis)
	c.text((p.r.Min.X+p.r.Max.X)/2, p.r.Max.Y+34, p.xlab, colAxis, 1)
	c.vtext(p.r.Min.X-52, (p.r.Min.Y+p.r.Max.Y)/2, p.ylab, colAxis)
	c.text(p.r.Min.X, p.r.Min.Y-8, title, colAxis, 0)
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*pow {
			return m * pow
		}
	}
	return 10 * pow
}

func trimFloat(v float64) string {
	if math.Abs(v-math.Round(v)) < 1e-9 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%g", math.Round(v*1000)/1000)
}

// plotSwitch writes the switch test's latency picture: on top one second
// of requests around switches, each a dot in the color that answered,
// switches as vertical lines; below, all switches superposed, P50 and P99
// latency by time since the switch.
func plotSwitch(path string, reqs []reqRecord, calls []switchRecord, res SwitchTest, o *options) error {
	var sw []switchRecord
	for _, s := range calls {
		if s.ok {
			sw = append(sw, s)
		}
	}
	if len(reqs) == 0 {
		return fmt.Errorf("no requests to plot")
	}
	const W, H = 1200, 900
	c := newCanvas(W, H)
	c.text(W/2, 22, fmt.Sprintf("Switchyard: latency while switching blue <-> green every %s at %d req/s (open loop, %d switches, %d failed requests, %d wrong color)",
		o.switchEvery, o.switchRate, res.Switches, res.Failed, res.WrongColor), colAxis, 1)

	// Top: a one-second window starting at a switch near the middle.
	last := reqs[len(reqs)-1].start
	from := last / 2
	if i := slices.IndexFunc(sw, func(s switchRecord) bool { return s.returned >= last/2 }); i >= 0 {
		from = sw[i].returned - int64(o.switchEvery)/2
	}
	to := from + int64(time.Second)
	var win []float64
	for _, r := range reqs {
		if r.start >= from && r.start < to && r.ok {
			win = append(win, float64(r.end-r.start)/1e3)
		}
	}
	top := &panel{c: c, r: image.Rect(90, 70, W-30, 400), x0: 0, x1: float64(to-from) / 1e6,
		xlab: fmt.Sprintf("time since t = %.3f s of the test (ms)", float64(from)/1e9), ylab: "latency (microseconds)"}
	top.y0, top.y1 = 0, yCeiling(win)
	top.axes("One second of requests: dot = one request at its start time, colored by the pool that answered; gray line = switch returned")
	for _, s := range sw {
		if s.returned >= from && s.returned < to {
			x := top.px(float64(s.returned-from) / 1e6)
			for y := top.r.Min.Y; y < top.r.Max.Y; y += 6 {
				c.line(x, y, x, min(y+3, top.r.Max.Y), colSwitch)
			}
		}
	}
	for _, r := range reqs {
		if r.start < from || r.start >= to {
			continue
		}
		col := colFail
		switch {
		case !r.ok:
		case r.color == "blue":
			col = colBlue
		case r.color == "green":
			col = colGreen
		}
		lat := float64(r.end-r.start) / 1e3
		if !r.ok {
			lat = top.y1
		}
		c.dot(top.px(float64(r.start-from)/1e6), top.py(lat), 2, col)
	}
	legend(c, top.r.Max.X-250, top.r.Min.Y+18, []string{"answered by blue", "answered by green", "failed"}, []color.Color{colBlue, colGreen, colFail})

	// Bottom: every switch superposed.
	every := float64(o.switchEvery) / 1e6
	bins := 20
	binW := every / float64(bins)
	per := make([][]time.Duration, bins)
	var all []float64
	for _, r := range reqs {
		if !r.ok {
			continue
		}
		k := slices.IndexFunc(sw, func(s switchRecord) bool { return s.returned > r.start })
		if k == 0 {
			continue
		}
		if k < 0 {
			k = len(sw)
		}
		since := float64(r.start-sw[k-1].returned) / 1e6
		if since >= every {
			continue
		}
		lat := time.Duration(r.end - r.start)
		bin := min(int(since/binW), bins-1)
		per[bin] = append(per[bin], lat)
		all = append(all, float64(lat)/1e3)
	}
	bot := &panel{c: c, r: image.Rect(90, 500, W-30, 830), x0: 0, x1: every,
		xlab: "time since the last switch returned (ms)", ylab: "latency (microseconds)"}
	bot.y0, bot.y1 = 0, yCeiling(all)
	bot.axes(fmt.Sprintf("All %d switches superposed: P50 and P99 latency per %.0f ms bin of request start time", len(sw), binW))
	var prev50, prev99 image.Point
	for i, lats := range per {
		if len(lats) == 0 {
			continue
		}
		pc := percentiles(lats)
		x := bot.px((float64(i) + 0.5) * binW)
		p50, p99 := image.Pt(x, bot.py(pc.P50)), image.Pt(x, bot.py(pc.P99))
		for _, l := range lats {
			c.set(x+int(l%5)-2, bot.py(us(l)), colFaint)
		}
		if i > 0 && prev50 != (image.Point{}) {
			thick(c, prev50, p50, colP50)
			thick(c, prev99, p99, colP99)
		}
		c.dot(p50.X, p50.Y, 2, colP50)
		c.dot(p99.X, p99.Y, 2, colP99)
		prev50, prev99 = p50, p99
	}
	x := bot.px(float64(afterSwitchWindow) / 1e6)
	for y := bot.r.Min.Y; y < bot.r.Max.Y; y += 6 {
		c.line(x, y, x, min(y+3, bot.r.Max.Y), colSwitch)
	}
	c.text(x+4, bot.r.Min.Y+14, fmt.Sprintf("%d ms", afterSwitchWindow.Milliseconds()), colSwitch, 0)
	legend(c, bot.r.Max.X-250, bot.r.Min.Y+18, []string{"P50", "P99", "single requests"}, []color.Color{colP50, colP99, colFaint})
	c.text(W/2, H-20, fmt.Sprintf("requests starting in the first %d ms after a switch: P50/P99 %.0f/%.0f us; at other times %.0f/%.0f us; swap_ns P50 %.0f, max %.0f",
		afterSwitchWindow.Milliseconds(), res.AfterSwitch.P50, res.AfterSwitch.P99, res.Steady.P50, res.Steady.P99, res.Swap.P50, res.Swap.Max), colAxis, 1)

	fl, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(fl, c.img); err != nil {
		_ = fl.Close()
		return err
	}
	return fl.Close()
}

// yCeiling is the y-axis top: a nice number above the 99.9th percentile,
// so a few outliers (drawn at the top edge) do not flatten the rest.
func yCeiling(v []float64) float64 {
	if len(v) == 0 {
		return 1
	}
	s := slices.Clone(v)
	slices.Sort(s)
	top := s[min(len(s)-1, int(math.Ceil(0.999*float64(len(s))))-1)] * 1.2
	step := niceStep(top / 6)
	return math.Max(step, math.Ceil(top/step)*step)
}

func thick(c *canvas, a, b image.Point, col color.Color) {
	c.line(a.X, a.Y, b.X, b.Y, col)
	c.line(a.X, a.Y+1, b.X, b.Y+1, col)
}

func legend(c *canvas, x, y int, labels []string, cols []color.Color) {
	c.rect(image.Rect(x-8, y-14, x+240, y+len(labels)*16-6), color.White)
	for i, l := range labels {
		c.dot(x, y-4+i*16, 3, cols[i])
		c.text(x+10, y+i*16, l, colAxis, 0)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}
