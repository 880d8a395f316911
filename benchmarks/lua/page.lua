-- GET /events?after=N, with N drawn uniformly from [low, high] per request.
-- Arguments: <low> <high> [extra query, such as "&subject=/party/50008271"]

local threads = {}

function setup(thread)
   thread:set("thread_number", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   low = tonumber(args[1])
   high = tonumber(args[2])
   extra = args[3] or ""
   math.randomseed(thread_number * 7919)
end

function request()
   local after = math.random(low, high)
   return wrk.format("GET", "/events?after=" .. after .. extra)
end
