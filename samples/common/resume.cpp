#include "resume.h"

#include <charconv>
#include <climits>
#include <cmath>

#include "../../tensor/generator.h"

namespace weft::samples {

namespace {
// The shortest text that reads back as exactly `x` (the peak lr is compared exactly).
std::string exact(double x) {
  char buf[32];
  const auto res = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, res.ptr);
}

// "938 steps (469 an epoch, 46 of warmup, peak lr 0.002)"
std::string describe(const ScheduleRecord& s) {
  return detail::str(s.total, " steps (", s.steps_per_epoch, " an epoch, ", s.warmup, " of warmup, peak lr ",
                     exact(s.peak_lr), ")");
}

// The flags that would make this run's schedule the saved one.
std::string flags_for(const ScheduleRecord& saved, const ScheduleRecord& mine) {
  std::string s = detail::str("--epochs ", saved.total / saved.steps_per_epoch);
  if (saved.peak_lr != mine.peak_lr) s += " --lr " + exact(saved.peak_lr);
  if (saved.steps_per_epoch != mine.steps_per_epoch)
    s += detail::str(" and the --batch-size and --limit that make ", saved.steps_per_epoch, " steps an epoch");
  return s;
}
}  // namespace

ScheduleRecord schedule_record(const optim::CosineWarmupLR& schedule, int64_t steps_per_epoch) {
  return {.steps_per_epoch = steps_per_epoch, .warmup = schedule.warmup, .total = schedule.total,
          .peak_lr = schedule.base_lr()};
}

optim::Metadata checkpoint_metadata(const std::string& sample, int epochs_done, const optim::CosineWarmupLR& schedule,
                                    int64_t steps_per_epoch) {
  const ScheduleRecord s = schedule_record(schedule, steps_per_epoch);
  return {{"epoch", std::to_string(epochs_done)},
          {"sample", sample},
          {"generator_offset", std::to_string(default_generator().offset())},
          {"steps_per_epoch", std::to_string(s.steps_per_epoch)},
          {"lr_warmup_steps", std::to_string(s.warmup)},
          {"lr_total_steps", std::to_string(s.total)},
          {"lr_peak", exact(s.peak_lr)}};
}

ResumePoint read_resume_point(const std::string& path, const optim::Metadata& meta) {
  ResumePoint rp;
  rp.path = path;
  rp.epoch = static_cast<int>(optim::metadata_int(path, meta, "epoch", 0, INT_MAX));
  if (meta.count("generator_offset")) rp.generator_offset = optim::metadata_uint(path, meta, "generator_offset");
  if (meta.count("lr_total_steps")) {  // the four were saved together
    ScheduleRecord s;
    s.steps_per_epoch = optim::metadata_int(path, meta, "steps_per_epoch", 1);
    s.total = optim::metadata_int(path, meta, "lr_total_steps", 1);
    s.warmup = optim::metadata_int(path, meta, "lr_warmup_steps", 0, s.total - 1);
    s.peak_lr = optim::metadata_double(path, meta, "lr_peak");
    WEFT_CHECK(s.peak_lr >= 0, path, ": metadata field 'lr_peak' is ", s.peak_lr, ", below 0");
    rp.schedule = s;
  }
  return rp;
}

std::string resume_schedule(const ResumePoint& rp, optim::CosineWarmupLR& schedule, int64_t steps_taken,
                            int64_t steps_per_epoch) {
  const ScheduleRecord mine = schedule_record(schedule, steps_per_epoch);
  if (!rp.schedule) {
    schedule.set_step(steps_taken);
    return detail::str("note: ", rp.path, " does not record its learning-rate schedule (saved by an older weft); "
                       "assuming it is this run's, ", describe(mine), ", and continuing it at step ", steps_taken);
  }
  if (*rp.schedule == mine) {
    schedule.set_step(steps_taken);
    return "";
  }
  const int64_t step = int64_t(rp.epoch) * steps_per_epoch;
  schedule.set_step(step);
  return detail::str("warning: ", rp.path, " was saved on a learning-rate schedule of ", describe(*rp.schedule),
                     "; this run's is ", describe(mine), ". Continuing this run's schedule from the start of epoch ",
                     rp.epoch + 1, " (step ", step, ", lr ", schedule.lr_at(step),
                     "), as a run with these flags would. To continue the saved schedule instead, resume with ",
                     flags_for(*rp.schedule, mine), ".");
}

void save_scaler(const optim::GradScaler& scaler, optim::Metadata& meta, const std::string& suffix) {
  if (scaler.is_enabled()) save_scale(scaler.get_scale(), scaler.growth_tracker(), meta, suffix);
}

void save_scale(double scale, int64_t growth_tracker, optim::Metadata& meta, const std::string& suffix) {
  meta["grad_scale" + suffix] = exact(scale);
  meta["grad_scale_growth_tracker" + suffix] = std::to_string(growth_tracker);
}

void load_scaler(const std::string& path, const optim::Metadata& meta, optim::GradScaler& scaler,
                 const std::string& suffix) {
  const std::string scale_field = "grad_scale" + suffix, tracker_field = "grad_scale_growth_tracker" + suffix;
  if (!scaler.is_enabled() || !meta.count(scale_field)) return;
  const double scale = optim::metadata_double(path, meta, scale_field);
  const int64_t tracker = optim::metadata_int(path, meta, tracker_field);
  WEFT_CHECK(std::isfinite(scale) && scale > 0, path, ": metadata field '", scale_field, "' is '",
             meta.at(scale_field), "', not a positive finite loss scale");
  WEFT_CHECK(tracker >= 0, path, ": metadata field '", tracker_field, "' is ", tracker, ", not a count");
  scaler.load_state_dict({{"scale", full({}, scale, {.dtype = kFloat64})},
                          {"growth_tracker", full({}, double(tracker), {.dtype = kInt64})}});
}

std::string scaler_text(const optim::GradScaler& scaler) {
  if (!scaler.is_enabled()) return "";
  return detail::str(" loss_scale=", scaler.get_scale(), " skipped_steps=", scaler.skipped_steps());
}

}  // namespace weft::samples
