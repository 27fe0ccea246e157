"""Submit one text-to-video task, wait for it, save the MP4 (reads the WIRO_* environment)."""

from wiro_tasks import PollSchedule, TextToVideoInput, WiroClient, check_mp4

with WiroClient() as wiro:
    submitted = wiro.run(TextToVideoInput(prompt="a red fox trotting through fresh snow", seed="7"))
    task = wiro.wait(submitted.task_id, schedule=PollSchedule(first=1.0))
    if not task.succeeded:
        raise SystemExit(f"task {task.id} failed: {task.error_message}")
    saved = wiro.download(task.outputs[0], "fox.mp4", check=check_mp4)  # an MP4 container, or no file
    print(f"saved {saved.path} ({saved.size} bytes), ${task.total_cost:.6f} for {task.elapsed_seconds} s")
