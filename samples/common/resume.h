// What the training samples write into a checkpoint's metadata beside the weights and the
// optimizer state, and how --resume reads it back: the epochs done, the generator's
// offset, and the learning-rate schedule the run followed.
//
// The schedule is stored because it depends on flags: its length is --epochs x the steps
// of an epoch (--batch-size, --limit), its peak --lr. A run resumed with other values
// follows another schedule, and the optimizer's step count no longer says where on it to
// continue: `--epochs 1 --checkpoint B` then `--resume B --epochs 2` used to continue a
// 2-epoch schedule from whatever step matched, with no word about it.
//
// What happens then: a warning, and this run's schedule from the start of the epoch
// the checkpoint reached. Not a refusal, because a longer --epochs is how one extends a
// finished run, and the schedule the warning describes is exactly the one an
// uninterrupted run with this run's flags would follow for the remaining epochs. To
// continue the checkpoint's own schedule instead, the warning gives the flags to use.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "../../optim/grad_scaler.h"
#include "../../optim/optim.h"

namespace weft::samples {

// The learning-rate schedule of a run (recipes.h, make_schedule), as saved.
struct ScheduleRecord {
  int64_t steps_per_epoch = 0, warmup = 0, total = 0;
  double peak_lr = 0;
  bool operator==(const ScheduleRecord&) const = default;
};
ScheduleRecord schedule_record(const optim::CosineWarmupLR& schedule, int64_t steps_per_epoch);

// The metadata a sample saves after `epochs_done` epochs: "epoch", "sample",
// "generator_offset" and the schedule's fields ("steps_per_epoch", "lr_warmup_steps",
// "lr_total_steps", "lr_peak"). Samples add their own fields to it.
optim::Metadata checkpoint_metadata(const std::string& sample, int epochs_done, const optim::CosineWarmupLR& schedule,
                                    int64_t steps_per_epoch);

// Where a --resume checkpoint says to continue, read from its metadata; every field is
// checked, and a bad one is an error naming the file, the field and the value.
struct ResumePoint {
  std::string path;
  int epoch = 0;                            // epochs done ("epoch", required)
  std::optional<uint64_t> generator_offset;  // absent in some samples' checkpoints
  std::optional<ScheduleRecord> schedule;    // absent in checkpoints from before it was saved
};
ResumePoint read_resume_point(const std::string& path, const optim::Metadata& meta);

// Moves `schedule` (this run's, over `steps_per_epoch` steps an epoch) to where the
// checkpoint left off: the optimizer's `steps_taken` when the checkpoint's schedule is
// this one, the start of epoch rp.epoch of this run's schedule when it differs. Returns
// the warning to print in that case (naming both schedules and the flags that would
// continue the saved one), or "" when there is nothing to say.
std::string resume_schedule(const ResumePoint& rp, optim::CosineWarmupLR& schedule, int64_t steps_taken,
                            int64_t steps_per_epoch);

// A float16 run's loss scale rides in the checkpoint's metadata ("grad_scale",
// "grad_scale_growth_tracker"), so a resumed run goes on with the scale it had rather
// than climbing down from 65536 again through skipped steps. Nothing for a disabled
// scaler (float32, bf16); loading a checkpoint without the fields leaves it as it is.
// Several scalers in one checkpoint (the parameter server's workers, each with its own
// loss scale) tell their fields apart by `suffix` (".rank1").
void save_scaler(const optim::GradScaler& scaler, optim::Metadata& meta, const std::string& suffix = "");
// The same fields from a scale and growth tracker (another rank's, gathered).
void save_scale(double scale, int64_t growth_tracker, optim::Metadata& meta, const std::string& suffix = "");
void load_scaler(const std::string& path, const optim::Metadata& meta, optim::GradScaler& scaler,
                 const std::string& suffix = "");
// " loss_scale=S skipped_steps=N" for the epoch line, or "" for a disabled scaler.
std::string scaler_text(const optim::GradScaler& scaler);

}  // namespace weft::samples
