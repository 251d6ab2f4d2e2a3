// A sequential test for a slowdown in a stream of production timings: Page's CUSUM (Page 1954)
// on each report's log mean time, standardised against a reference window of the stream's first
// reports (production times are compared with their own history, not with lab times, which are
// measured under other conditions).
//
//   z_t = clamp((log x_t - median_ref - log m) / scale_ref, -clip, +clip)
//   S_t = max(0, S_{t-1} + z_t - k);   alarm when S_t > h
//
// m (min_slowdown, 1.05) is the smallest slowdown worth a flag: the test is of "more than 5%
// slower", not of "slower at all". Without it a stream whose reference reports were quieter than
// its later ones (a service started at night), or a daily cycle of a few percent, was flagged as
// a 1.02x regression with an unchanged mean (a telemetry trial: 5 streams of 6), and under
// `--retune act` each flag marks the task's records stale and spends a retuning job.
//
// scale_ref is 1.4826 x the MAD of the reference (a robust standard deviation), at least
// min_log_scale. Clamping bounds what one outlier report can add (clip - k), so a single wild
// report never raises the alarm.
//
// False alarms: for independent, normally distributed log report means, Siegmund's approximation
// of the in-control average run length with the defaults (k = 1, h = 20) is about
// exp(2 k (h + 1.166)) / (2 k^2) = 1e18 reports even with m = 1 (in control, log m shifts z below
// zero, which lengthens it); estimating the reference from 30 reports leaves it above 1e9. The
// benchmark (bench/drift) measures it. Detection: a slowdown f is a shift of d = log(f / m) /
// scale_ref reference standard deviations; with d > k it adds min(d, clip) - k per report, so it
// is flagged after about h / (min(d, clip) - k) reports: 7 for a large slowdown, 20 for d = 2.
#ifndef KTUNE_DRIFT_SLOWDOWN_DETECTOR_H_
#define KTUNE_DRIFT_SLOWDOWN_DETECTOR_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

namespace ktune {

struct SlowdownDetectorOptions {
  int reference_reports = 30;   // reports that define the stream's normal
  double k = 1.0;               // allowance, in reference standard deviations
  double h = 20.0;              // decision threshold
  double clip = 4.0;            // bound on one report's standardised value
  double min_log_scale = 0.005; // floor of the reference spread (0.5%), for very steady streams
  double min_slowdown = 1.05;   // m: slowdowns up to this factor are not flagged
};

class SlowdownDetector {
 public:
  explicit SlowdownDetector(SlowdownDetectorOptions options = {});

  // Feeds one report's mean time (ms, > 0). True exactly once: on the report that raises the
  // alarm; the detector then stays alarmed until Reset.
  bool Observe(double mean_ms);

  bool alarmed() const { return alarmed_; }
  bool calibrated() const {
    return reference_.size() >= static_cast<size_t>(options_.reference_reports);
  }
  int64_t reports() const { return reports_; }
  double statistic() const { return cusum_; }
  double reference_ms() const;  // the reference's median time; 0 until calibrated
  double recent_ms() const;     // the median of the last few reports
  // Forgets the reference and the statistic: the stream starts anew (after a retune).
  void Reset();

 private:
  SlowdownDetectorOptions options_;
  std::vector<double> reference_;  // log times of the first reports
  double center_ = 0, scale_ = 0;
  double cusum_ = 0;
  bool alarmed_ = false;
  int64_t reports_ = 0;
  std::deque<double> recent_;  // log times of the last reports
};

}  // namespace ktune

#endif  // KTUNE_DRIFT_SLOWDOWN_DETECTOR_H_
